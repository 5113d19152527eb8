#!/bin/bash
# hook-run-when: annotation com.hooks.dcgm.enabled
# (hook-run starts this hook only when one of these holds: see hook-run --help.)
# DCGM hook: the host's NVIDIA Data Center GPU Manager libraries in the container, for job
# reports that read GPU metrics from inside it (CSCS's jobreport).
#
# When: annotation com.hooks.dcgm.enabled = "true".
# What: DCGM_HOOK_DIRECTORY bound at the same path; the DCGM_HOOK_LIBRARIES (globs) added to the
# container, or replacing its copies, then the image's linker cache refreshed.
#
# Configuration: the defaults below, overridden by $TOOLBOX_SYSCONF_PATH/hooks.conf.d/dcgm.conf
# (or the job's environment).
set -euo pipefail
hook_name=dcgm
# lib/common.sh beside the hook's real file (no process started unless the hook is a link).
hook_file="$0"
[ ! -L "$hook_file" ] || hook_file="$(readlink -f "$hook_file")"
[ "${hook_file#*/}" != "$hook_file" ] || hook_file="./$hook_file"
# shellcheck source=lib/common.sh
. "${hook_file%/*}/lib/common.sh"

: "${DCGM_HOOK_DIRECTORY:=/usr/local/dcgm}"
: "${DCGM_HOOK_LIBRARIES:=/usr/lib64/libdcgm*.so.* /usr/lib64/libnvperf_dcgm_host.so /usr/lib/x86_64-linux-gnu/libdcgm*.so.* /usr/lib/aarch64-linux-gnu/libdcgm*.so.*}"
load_config

enabled com.hooks.dcgm.enabled || exit 0

# shellcheck disable=SC2086
mapfile -t libraries < <(existing_files $DCGM_HOOK_LIBRARIES)
[ ${#libraries[@]} -gt 0 ] || die "DCGM is not installed on this node (none of $DCGM_HOOK_LIBRARIES)" \
    "set com.hooks.dcgm.enabled = \"false\", or run on nodes with DCGM"
if [ -d "$DCGM_HOOK_DIRECTORY" ]; then
    mount_line "$DCGM_HOOK_DIRECTORY" "$DCGM_HOOK_DIRECTORY" x-create=dir,rbind,ro,nosuid,nodev >>"$ENROOT_MOUNTS" # made by hook-run after the hooks
fi
toolbox-hook inject --name dcgm "${libraries[@]}" ||
    die "cannot bring DCGM's libraries into the container (toolbox-hook's message above)"
