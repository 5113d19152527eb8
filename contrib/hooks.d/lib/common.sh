# shellcheck shell=bash
# Functions shared by the site hooks of contrib/hooks.d (sourced by them; in lib/, so hook-run does
# not run it). A hook sets hook_name, sources this file, then calls load_config.
#
# The hook protocol (see hook-run --help): ENROOT_ROOTFS (the container's root), ENROOT_ENVIRON
# (the container's variables so far; lines appended are added), ENROOT_MOUNTS, ENROOT_PID,
# OCI_ANNOTATION_<key with . replaced by __>, HOOK_RUN_STATE_DIR (private, lives as long as the
# container), TOOLBOX_HOOK_PIDS; enroot-mount and toolbox-hook are on PATH.

# The value of an annotation (empty when not set).
annotation() {
    local name="OCI_ANNOTATION_${1//./__}"
    printf '%s' "${!name-}"
}

is_true() {
    case "${1,,}" in true | yes | y | on | 1) return 0 ;; *) return 1 ;; esac
}

is_false() {
    case "${1,,}" in false | no | n | off | 0) return 0 ;; *) return 1 ;; esac
}

# Whether an annotation turns something on; a value that is neither true nor false (a typo)
# counts as false, with a warning rather than silently.
enabled() {
    local value
    value="$(annotation "$1")"
    is_true "$value" && return 0
    if [ -n "$value" ] && ! is_false "$value"; then
        note "warning: $1 is '$value', neither true nor false: taken as false"
    fi
    return 1
}

# The container's value of a variable so far (image Env, EDF [env], earlier hooks), or empty.
container_var() {
    local line value=""
    [ -r "${ENROOT_ENVIRON-}" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in "$1="*) value="${line#*=}" ;; esac
    done <"$ENROOT_ENVIRON"
    printf '%s' "$value"
}

set_container_var() {
    printf '%s=%s\n' "$1" "$2" >>"$ENROOT_ENVIRON"
}

# Sets a variable unless the container already has one: the user's EDF [env] wins.
default_container_var() {
    [ -n "$(container_var "$1")" ] || set_container_var "$1" "$2"
}

# The host path of PATH inside the container's root: symbolic links followed as they would be
# inside it (an absolute link leads to the container's root, never the host's). For reading what
# the container will see; prints nothing when a link loops.
in_root() {
    local rest="${1#/}" resolved="" part target hops=0
    while [ -n "$rest" ]; do
        part="${rest%%/*}"
        if [ "$part" = "$rest" ]; then rest=""; else rest="${rest#*/}"; fi
        case "$part" in
        "" | .) continue ;;
        ..) resolved="${resolved%/*}"; continue ;;
        esac
        if [ -L "$ENROOT_ROOTFS$resolved/$part" ]; then
            hops=$((hops + 1))
            [ "$hops" -le 40 ] || return 1
            target="$(readlink "$ENROOT_ROOTFS$resolved/$part")"
            if [ "${target#/}" != "$target" ]; then resolved=""; fi
            rest="${target#/}${rest:+/$rest}"
        else
            resolved="$resolved/$part"
        fi
    done
    printf '%s\n' "$ENROOT_ROOTFS$resolved"
}

# One fstab line for enroot-mount: SOURCE TARGET none OPTIONS, fields escaped.
mount_line() {
    local source="${1//\\/\\134}" target="${2//\\/\\134}"
    source="${source// /\\040}"
    target="${target// /\\040}"
    printf '%s %s none %s\n' "$source" "$target" "$3"
}

note() {
    printf '%s hook: %s\n' "$hook_name" "$1" >&2
}

die() {
    printf '%s hook: error: %s\n' "$hook_name" "$1" >&2
    [ -z "${2-}" ] || printf '  hint: %s\n' "$2" >&2
    exit 1
}

# The site's settings for this hook: $TOOLBOX_SYSCONF_PATH/hooks.conf.d/<hook_name>.conf, a bash
# file of variable assignments (read after the hook's defaults, so it wins over them).
load_config() {
    local config="${TOOLBOX_SYSCONF_PATH:-/etc/toolbox}/hooks.conf.d/$hook_name.conf"
    if [ -r "$config" ]; then
        # shellcheck disable=SC1090
        . "$config"
    fi
}

# Every file matching the (glob) patterns given, each once.
existing_files() {
    local pattern file
    for pattern in "$@"; do
        for file in $pattern; do
            if [ -e "$file" ]; then printf '%s\n' "$file"; fi
        done
    done | sort -u
}

# Where the CXI and NCCL hooks take the network stack from: annotation com.hooks.netstack.source,
# else NETSTACK_DEFAULT_SOURCE. Both settings, and NETSTACK_BASE, are the CXI hook's (cxi.conf),
# read here by either hook. Prints "host", or the artifact's directory (links resolved:
# NETSTACK_BASE/<machine>/<com.hooks.netstack.version, default latest>/<com.hooks.netstack.name,
# default default>); says why and fails otherwise. Use as: where="$(netstack)" || exit 1.
netstack() {
    local settings base default source version name directory
    settings="$(
        hook_name=cxi
        : "${NETSTACK_BASE:=}" "${NETSTACK_DEFAULT_SOURCE:=host}"
        load_config
        printf '%s\n%s' "$NETSTACK_BASE" "$NETSTACK_DEFAULT_SOURCE"
    )"
    base="${settings%%$'\n'*}"
    default="${settings#*$'\n'}"
    source="$(annotation com.hooks.netstack.source)"
    source="${source:-$default}"
    case "$source" in
    host) printf 'host\n' ;;
    artifact)
        [ -n "$base" ] || die "com.hooks.netstack.source is artifact, but this system has no netstack artifacts" \
            "set NETSTACK_BASE in hooks.conf.d/cxi.conf, or use com.hooks.netstack.source = \"host\""
        version="$(annotation com.hooks.netstack.version)"
        name="$(annotation com.hooks.netstack.name)"
        directory="$base/$(uname -m)/${version:-latest}/${name:-default}"
        [ -d "$directory" ] || die "no netstack artifact $directory" \
            "see the versions in $base/$(uname -m) (com.hooks.netstack.version, com.hooks.netstack.name)"
        readlink -f "$directory"
        ;;
    *) die "com.hooks.netstack.source is '$source'" 'use "host" or "artifact"' ;;
    esac
}

# Mounts a netstack artifact's directory (read-only) at its own path in the container, once per
# container: its libraries find the ones they load there, through their run path, and the
# image's own libraries stay untouched.
netstack_mount() {
    local marker="${HOOK_RUN_STATE_DIR:-}/netstack-mounted"
    if [ -n "${HOOK_RUN_STATE_DIR:-}" ]; then
        [ ! -e "$marker" ] || return 0
        : >"$marker"
    fi
    mount_line "$1" "$1" x-create=dir,bind,ro,nosuid,nodev >>"$ENROOT_MOUNTS"
}
