#!/bin/bash
# hook-run-when: annotation com.hooks.mpi.enabled
# (hook-run starts this hook only when one of these holds: see hook-run --help.)
# MPI hook: the host's MPI (an MPICH-ABI one: Cray MPICH, MVAPICH, Intel MPI) replaces the image's
# MPICH, after an ABI check on the libraries' version numbers, as Sarus' MPI hook does.
#
# When: annotation com.hooks.mpi.enabled = "true"; com.hooks.mpi.type picks one of the MPIs the
# site configured (default MPI_HOOK_DEFAULT_TYPE).
# What:
#   MPI_LIBS             host MPI libraries (paths, or names in the host's linker cache); each
#                        replaces the image's library of the same name (libmpi.so.12 ...), after
#                        the check MPI_COMPATIBILITY_TYPE: major (the major numbers of the file
#                        names equal: the sonames agree; the default), full (also warns when the
#                        host's minor number is below the image's), strict (major and minor
#                        equal). A library the image lacks is added (libmpicxx beside a C-only
#                        MPICH), as Sarus does; an image with none of them (no MPI of its own),
#                        or with an incompatible one, stops the start with a message naming
#                        both files. Libraries are matched by their file names (a Cray
#                        libmpi.so.12.5.5 whose soname is its own still replaces libmpi.so.12).
#   MPI_DEPENDENCY_LIBS  libraries the host MPI needs, added (or replacing the image's).
#   MPI_BIND_MOUNTS      files and directories (devices: /dev/xpmem) bound at the same path.
#   The libraries the MPI libraries load are added where the image lacks them.
#
# Configuration: $TOOLBOX_SYSCONF_PATH/hooks.conf.d/mpi.conf sets the four variables for the
# default type and may define a function mpi_type_<type> per other type that sets them, e.g.
#   MPI_LIBS="/opt/cray/pe/mpich/default/ofi/gnu/lib/libmpi_gnu_123.so.12"
#   MPI_DEPENDENCY_LIBS="/opt/cray/pe/lib64/libpmi.so.0 /opt/cray/pe/lib64/libpmi2.so.0"
#   MPI_BIND_MOUNTS="/dev/xpmem"
#   mpi_type_mpich-debug() { MPI_LIBS="..."; MPI_COMPATIBILITY_TYPE=strict; }
set -euo pipefail
hook_name=mpi
# lib/common.sh beside the hook's real file (no process started unless the hook is a link).
hook_file="$0"
[ ! -L "$hook_file" ] || hook_file="$(readlink -f "$hook_file")"
[ "${hook_file#*/}" != "$hook_file" ] || hook_file="./$hook_file"
# shellcheck source=lib/common.sh
. "${hook_file%/*}/lib/common.sh"

: "${MPI_HOOK_DEFAULT_TYPE:=mpich}"
: "${MPI_LIBS:=}"
: "${MPI_DEPENDENCY_LIBS:=}"
: "${MPI_BIND_MOUNTS:=}"
: "${MPI_COMPATIBILITY_TYPE:=major}"
: "${MPI_HOOK_LDCACHE:=/etc/ld.so.cache}"
load_config

enabled com.hooks.mpi.enabled || exit 0

type="$(annotation com.hooks.mpi.type)"
type="${type:-$MPI_HOOK_DEFAULT_TYPE}"
if [ "$type" != "$MPI_HOOK_DEFAULT_TYPE" ]; then
    if declare -F "mpi_type_$type" >/dev/null; then
        "mpi_type_$type"
    else
        configured=$(declare -F | sed -n 's/^declare -f mpi_type_//p' | tr '\n' ' ')
        die "the MPI type '$type' is not configured on this system" \
            "use com.hooks.mpi.type = one of: $MPI_HOOK_DEFAULT_TYPE $configured"
    fi
fi
[ -n "$MPI_LIBS" ] || die "no host MPI is configured on this system for the type '$type'" \
    "the site sets MPI_LIBS in $TOOLBOX_SYSCONF_PATH/hooks.conf.d/mpi.conf; or set com.hooks.mpi.enabled = \"false\""
case "$MPI_COMPATIBILITY_TYPE" in
major | full | strict) ;;
*) die "MPI_COMPATIBILITY_TYPE is '$MPI_COMPATIBILITY_TYPE'" "use major, full or strict" ;;
esac

# shellcheck disable=SC2086
toolbox-hook inject --name mpi --abi "$MPI_COMPATIBILITY_TYPE" --dependencies --ldcache "$MPI_HOOK_LDCACHE" $MPI_LIBS ||
    die "cannot put the host's MPI in place of the image's (toolbox-hook's message above)" \
        "the image needs an MPI of the host's ABI (MPICH's) and version (com.hooks.mpi.type, MPI_COMPATIBILITY_TYPE)"
if [ -n "$MPI_DEPENDENCY_LIBS" ]; then
    # shellcheck disable=SC2086
    toolbox-hook inject --name mpi-deps --dependencies --ldcache "$MPI_HOOK_LDCACHE" $MPI_DEPENDENCY_LIBS ||
        die "cannot bring the MPI's dependencies into the container (toolbox-hook's message above)"
fi
lines=""
for path in $MPI_BIND_MOUNTS; do
    [ -e "$path" ] || die "MPI_BIND_MOUNTS names $path, which does not exist on this node"
    lines+=$(mount_line "$path" "$path" x-create=auto,rbind)$'\n'
done
printf '%s' "$lines" >>"$ENROOT_MOUNTS" # made by hook-run after the hooks: no enroot-mount to start
