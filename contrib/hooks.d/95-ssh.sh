#!/bin/bash
# hook-run-when: annotation com.hooks.ssh.enabled
# (hook-run starts this hook only when one of these holds: see hook-run --help.)
# SSH hook: an SSH server (Dropbear) inside the container for the job, so that users can log in
# to the running container (debuggers, IDEs, interactive work).
#
# When: annotation com.hooks.ssh.enabled = "true".
# What:
#   - host keys generated for this container (ed25519), in the hook's private state directory;
#   - the public key(s) of the file named by annotation com.hooks.ssh.authorize_ssh_key (an
#     absolute path on the host; default ~/.ssh/authorized_keys) authorised for the user, bound
#     at ~/.ssh/authorized_keys inside the container (the host's file is not changed; where the
#     home there is a mount from the host, that file must exist on the host: nothing is created
#     in the user's real home, and the hook says so);
#   - Dropbear (SSH_HOOK_DROPBEAR: Debian's, or a static build) bound into /opt/toolbox/ssh with
#     the libraries and loader it needs, so that it runs in any image, glibc or musl, and started
#     inside the container as a service of the container: listening on annotation
#     com.hooks.ssh.port (default 15263), password logins off; stopped when the container ends;
#   - /etc/profile.d/zz-toolbox-ssh.sh: the container's variables (image, EDF, hooks so far) for
#     login shells, quoted as they are.
# Log: /tmp/.toolbox-ssh.log inside the container.
#
# Configuration: the defaults below, overridden by $TOOLBOX_SYSCONF_PATH/hooks.conf.d/ssh.conf
# (or the job's environment).
set -euo pipefail
hook_name=ssh
# lib/common.sh beside the hook's real file (no process started unless the hook is a link).
hook_file="$0"
[ ! -L "$hook_file" ] || hook_file="$(readlink -f "$hook_file")"
[ "${hook_file#*/}" != "$hook_file" ] || hook_file="./$hook_file"
# shellcheck source=lib/common.sh
. "${hook_file%/*}/lib/common.sh"

: "${SSH_HOOK_DROPBEAR:=/usr/sbin/dropbear}"
: "${SSH_HOOK_DROPBEARKEY:=/usr/bin/dropbearkey}"
: "${SSH_HOOK_DEFAULT_PORT:=15263}"
: "${SSH_HOOK_LISTEN:=}" # an address to listen on (default: all)
load_config

enabled com.hooks.ssh.enabled || exit 0

port="$(annotation com.hooks.ssh.port)"
port="${port:-$SSH_HOOK_DEFAULT_PORT}"
case "$port" in
"" | *[!0-9]*) die "com.hooks.ssh.port is '$port'" "give a port number (1-65535)" ;;
esac
[ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "com.hooks.ssh.port is $port" "give a port number (1-65535)"
home="${HOME:-}"
[ "${home#/}" != "$home" ] || home=$(getent passwd "$(id -u)" | cut -d: -f6)
[ -n "$home" ] || die "cannot tell the user's home directory" "set HOME"
key="$(annotation com.hooks.ssh.authorize_ssh_key)"
key="${key:-$home/.ssh/authorized_keys}"
[ "${key#/}" != "$key" ] || die "com.hooks.ssh.authorize_ssh_key is '$key'" "give the absolute path of a public key file"
[ -r "$key" ] || die "cannot read the public key file $key (com.hooks.ssh.authorize_ssh_key)" \
    "create a key pair with ssh-keygen and give the .pub file's absolute path"
# authorized_keys lines: [options] keytype base64 [comment]; comments and blank lines aside.
key_lines='^[[:space:]]*([^#[:space:]].*[[:space:]])?(ssh-|ecdsa-|sk-)[^[:space:]]+[[:space:]]+AAAA'
[ -f "$key" ] && grep -qE "$key_lines" "$key" || die "$key holds no public key" "give a .pub file (ssh-ed25519 AAAA...) or an authorized_keys file"
# Nothing else may listen there: the server would exit at once, its reason lost with the container.
port_hex=$(printf ':%04X' "$port")
if awk -v port="$port_hex" '$4 == "0A" && substr($2, length($2) - 4) == port { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
    die "port $port is in use on this node (another container's SSH server, or another program)" \
        "choose another com.hooks.ssh.port (one per job on a node)"
fi
[ -x "$SSH_HOOK_DROPBEAR" ] || die "no SSH server on this system ($SSH_HOOK_DROPBEAR)" \
    "install Dropbear (apt-get install dropbear-bin) or set SSH_HOOK_DROPBEAR in hooks.conf.d/ssh.conf"
[ -x "$SSH_HOOK_DROPBEARKEY" ] || die "no dropbearkey on this system ($SSH_HOOK_DROPBEARKEY)" \
    "install Dropbear (apt-get install dropbear-bin) or set SSH_HOOK_DROPBEARKEY in hooks.conf.d/ssh.conf"

state="$HOOK_RUN_STATE_DIR/ssh"
mkdir -p -m 0700 "$state/etc"
umask 077
"$SSH_HOOK_DROPBEARKEY" -t ed25519 -f "$state/etc/host_key" >/dev/null 2>&1 ||
    die "cannot generate the host key with $SSH_HOOK_DROPBEARKEY"
grep -E "$key_lines" "$key" | sed 's/^[[:space:]]*//' >"$state/authorized_keys"

# The container's variables for login shells: those of the container after the last hook (later
# hooks add some: the GPU's, MPS's), which hook-run writes into HOOK_RUN_STATE_DIR/environ when
# the hooks are done; read at login, each value as it is (no quoting to get wrong).
# Until then (a login while later hooks still run), the variables so far.
grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$ENROOT_ENVIRON" >"$HOOK_RUN_STATE_DIR/environ" || :
cat >"$state/profile.sh" <<'PROFILE'
# The job's variables (toolbox ssh hook).
while IFS= read -r toolbox_line || [ -n "$toolbox_line" ]; do
    toolbox_name="${toolbox_line%%=*}"
    case "$toolbox_name" in "" | [0-9]* | *[!A-Za-z0-9_]*) continue ;; esac
    export "$toolbox_name=${toolbox_line#*=}"
done </opt/toolbox/ssh/environ
unset toolbox_line toolbox_name
PROFILE

# The key first, on its own: where the home inside the container is a mount from the host that
# has no ~/.ssh/authorized_keys, nothing may be created there (the host's files stay as they are).
printf '%s' "$(mount_line "$state/authorized_keys" "$home/.ssh/authorized_keys" x-create=file,bind,ro,nosuid,nodev,nofail)" |
    enroot-mount --root "$ENROOT_ROOTFS" -
# (hook-run without --apply mounts nothing: there is nothing to check.)
if [ "${HOOK_RUN_ENROOT_MOUNT-}" != record ]; then
    cmp -s "$state/authorized_keys" "$(in_root "$home/.ssh/authorized_keys")" 2>/dev/null ||
        die "cannot put the key at $home/.ssh/authorized_keys in the container: $home there is a mount from the host without that file" \
            "put the public key into $home/.ssh/authorized_keys on the host (mode 600), or do not mount $home into the container"
fi
if [ -n "$(find "$(in_root "$home")" -maxdepth 0 -perm /022 2>/dev/null)" ]; then
    note "warning: $home is writable by others: the SSH server refuses logins for such a home directory"
fi
lines=$(mount_line "$state/etc" /opt/toolbox/ssh/etc x-create=dir,bind,ro,nosuid,nodev)$'\n'
lines+=$(mount_line "$state/profile.sh" /etc/profile.d/zz-toolbox-ssh.sh x-create=file,bind,ro,nosuid,nodev)$'\n'
lines+=$(mount_line "$HOOK_RUN_STATE_DIR/environ" /opt/toolbox/ssh/environ x-create=file,bind,ro,nosuid,nodev)$'\n'
lines+=$(mount_line "$(readlink -f "$SSH_HOOK_DROPBEAR")" /opt/toolbox/ssh/bin/dropbear x-create=file,bind,ro,nosuid,nodev)$'\n'
# A dynamically linked Dropbear brings its libraries and the host's loader, so that it runs
# whatever the image's C library is (it starts the user's shell with a clean environment).
command=(/opt/toolbox/ssh/bin/dropbear)
loader=""
while read -r name arrow path rest; do
    if [ "$arrow" = "=>" ] && [ "${path#/}" != "$path" ]; then
        lines+=$(mount_line "$(readlink -f "$path")" "/opt/toolbox/ssh/lib/$name" x-create=file,bind,ro,nosuid,nodev)$'\n'
    elif [ "${name#/}" != "$name" ] && [ "$arrow" != "=>" ]; then
        loader="$name"
    fi
done < <(ldd "$SSH_HOOK_DROPBEAR" 2>/dev/null || true)
if [ -n "$loader" ]; then
    lines+=$(mount_line "$(readlink -f "$loader")" "/opt/toolbox/ssh/lib/${loader##*/}" x-create=file,bind,ro,nosuid,nodev)$'\n'
    command=("/opt/toolbox/ssh/lib/${loader##*/}" --library-path /opt/toolbox/ssh/lib)
    # Dropbear re-executes itself for each connection from the file its argv[0] names, which
    # would start it through the image's loader without these libraries (on a glibc image every
    # login failed): an argv[0] that names no file makes it fork instead.
    if "$loader" --help 2>/dev/null | grep -q -- --argv0; then
        command+=(--argv0 /opt/toolbox/ssh/no-re-exec/dropbear)
    fi
    command+=(/opt/toolbox/ssh/bin/dropbear)
fi
printf '%s' "$lines" | enroot-mount --root "$ENROOT_ROOTFS" -

listen="$port"
[ -z "$SSH_HOOK_LISTEN" ] || listen="$SSH_HOOK_LISTEN:$port"
toolbox-hook service --log /tmp/.toolbox-ssh.log -- "${command[@]}" -F -E -s -m -r /opt/toolbox/ssh/etc/host_key \
    -p "$listen" -P /tmp/.toolbox-ssh.pid >/dev/null ||
    die "the SSH server did not start on port $port (toolbox-hook's message above)" \
        "choose another com.hooks.ssh.port, or check SSH_HOOK_LISTEN in hooks.conf.d/ssh.conf"
if [ "${HOOK_RUN_ENROOT_MOUNT-}" = record ]; then
    note "would start an SSH server on port $port (hook-run without --apply starts nothing)"
else
    note "SSH server on port $port (ssh -p $port $(id -un 2>/dev/null || id -u)@$(hostname))"
fi
