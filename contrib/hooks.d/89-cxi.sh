#!/bin/bash
# hook-run-when: annotation com.hooks.cxi.enabled
# hook-run-when: annotation com.hooks.aws_ofi_nccl.enabled
# hook-run-when: variable CXI_HOOK_DEFAULT
# hook-run-when: config cxi CXI_HOOK_DEFAULT
# (hook-run starts this hook only when one of these holds: see hook-run --help.)
# CXI / libfabric hook (HPE Slingshot): the host's libfabric, with the libraries it needs and the
# CXI devices, in the container, replacing the image's libfabric, so that MPI and NCCL in the
# image use the high-speed network (on Alps: OSU bandwidth 1.3 GB/s without, 23.9 GB/s with).
#
# When: annotation com.hooks.cxi.enabled = "true"; also when com.hooks.aws_ofi_nccl.enabled =
# "true" (the NCCL plugin needs it) unless com.hooks.cxi.enabled = "false". Without the
# annotation, CXI_HOOK_DEFAULT decides (a Slingshot site sets it to true).
# What:
#   libraries  CXI_HOOK_LIBRARIES (names in the host's linker cache, or paths) added or replacing
#              the image's copies; the libraries they load added when the image lacks them;
#              then the image's linker cache refreshed (toolbox-hook inject).
#   artifact   with annotation com.hooks.netstack.source = "artifact" (or
#              NETSTACK_DEFAULT_SOURCE=artifact), the same libraries taken from the netstack
#              artifact directory NETSTACK_BASE/<machine>/<version>/<name> instead
#              (com.hooks.netstack.version, default latest; com.hooks.netstack.name, default
#              default), which is mounted read-only at its own path: the libraries the artifact
#              bundles (libc, libstdc++, libssl, ...) are found there through the run paths they
#              were built with, and never replace the image's (spec 1.13); the ones the image
#              lacks are added as above.
#   devices    CXI_HOOK_DEVICES (globs) bound at the same path.
# Check inside: fi_info -p cxi.
#
# Configuration: the defaults below, overridden by $TOOLBOX_SYSCONF_PATH/hooks.conf.d/cxi.conf
# (or the job's environment).
set -euo pipefail
hook_name=cxi
# lib/common.sh beside the hook's real file (no process started unless the hook is a link).
hook_file="$0"
[ ! -L "$hook_file" ] || hook_file="$(readlink -f "$hook_file")"
[ "${hook_file#*/}" != "$hook_file" ] || hook_file="./$hook_file"
# shellcheck source=lib/common.sh
. "${hook_file%/*}/lib/common.sh"

: "${CXI_HOOK_DEFAULT:=false}"                        # on when the EDF says nothing
: "${CXI_HOOK_LIBRARIES:=libfabric.so.1 libcxi.so.1}" # replace the image's copies
: "${CXI_HOOK_DEVICES:=/dev/cxi* /dev/xpmem}"         # bound when present
: "${CXI_HOOK_LDCACHE:=/etc/ld.so.cache}"             # the host's linker cache
: "${NETSTACK_BASE:=}"                                # where netstack artifacts are
: "${NETSTACK_DEFAULT_SOURCE:=host}"                  # host or artifact, when the EDF says nothing
load_config

if [ -z "$(annotation com.hooks.cxi.enabled)" ]; then
    # Not said: on with the NCCL plugin, else as the site's default.
    on=false
    if enabled com.hooks.aws_ofi_nccl.enabled || is_true "$CXI_HOOK_DEFAULT"; then on=true; fi
    is_true "$on" || exit 0
else
    enabled com.hooks.cxi.enabled || exit 0
fi

where="$(netstack)" || exit 1
if [ "$where" = host ]; then
    # shellcheck disable=SC2086
    toolbox-hook inject --name cxi --dependencies --ldcache "$CXI_HOOK_LDCACHE" $CXI_HOOK_LIBRARIES ||
        die "cannot bring the host's libfabric into the container (toolbox-hook's message above)" \
            "check CXI_HOOK_LIBRARIES and CXI_HOOK_LDCACHE in hooks.conf.d/cxi.conf"
else
    libraries=()
    for library in $CXI_HOOK_LIBRARIES; do
        [ ! -e "$where/${library##*/}" ] || libraries+=("$where/${library##*/}")
    done
    [ ${#libraries[@]} -gt 0 ] || die "the netstack artifact $where has none of $CXI_HOOK_LIBRARIES" \
        "check com.hooks.netstack.version and .name, or CXI_HOOK_LIBRARIES in hooks.conf.d/cxi.conf"
    netstack_mount "$where"
    toolbox-hook inject --name cxi --dependencies --ldcache "$CXI_HOOK_LDCACHE" "${libraries[@]}" ||
        die "cannot bring the netstack artifact's libfabric into the container (toolbox-hook's message above)"
fi

lines=""
# shellcheck disable=SC2086
mapfile -t devices < <(existing_files $CXI_HOOK_DEVICES)
for device in "${devices[@]}"; do
    lines+=$(mount_line "$device" "$device" x-create=file,bind)$'\n'
done
printf '%s' "$lines" >>"$ENROOT_MOUNTS" # made by hook-run after the hooks: no enroot-mount to start
