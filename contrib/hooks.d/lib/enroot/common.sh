# shellcheck shell=bash
# The functions enroot's own hooks (conf/hooks/*.sh of NVIDIA/enroot) source from
# "${ENROOT_LIBRARY_PATH}/common.sh", written for the toolbox: hook-run and ns-enter point
# ENROOT_LIBRARY_PATH here, so that those hooks run unchanged. Same names and calling conventions
# (common::NAME ARGS), the toolbox's own code. Messages go to stderr as enroot's do:
# "[INFO] ...", "[WARN] ...", "[ERROR] ...".

[ -n "${_TOOLBOX_ENROOT_COMMON_SH_:-}" ] && return 0
_TOOLBOX_ENROOT_COMMON_SH_=1

# common::log LEVEL MESSAGE: MESSAGE (or, for "-", the lines on stdin) with LEVEL's prefix.
common::log() {
    local level="${1-}" message="${2-}" prefix="" line
    [ -n "$message" ] || return 0
    case "$level" in
    INFO) prefix="[INFO]" ;;
    WARN) prefix="[WARN]" ;;
    ERROR) prefix="[ERROR]" ;;
    esac
    if [ "$message" = "-" ]; then
        while IFS= read -r line; do printf '%s %b\n' "$prefix" "$line" >&2; done
    else
        printf '%s %b\n' "$prefix" "$message" >&2
    fi
}

# common::err MESSAGE: says it and ends the hook with status 1.
common::err() {
    common::log ERROR "${1-}"
    exit 1
}

# common::checkcmd COMMAND...: each must be on PATH.
common::checkcmd() {
    local command
    for command in "$@"; do
        command -v "$command" >/dev/null 2>&1 || common::err "Command not found: $command"
    done
}

# common::realpath PATH: PATH with every link resolved (an error when it cannot be).
common::realpath() {
    local resolved
    resolved="$(readlink -f -- "${1-}" 2>/dev/null)" && [ -n "$resolved" ] ||
        common::err "No such file or directory: ${1-}"
    printf '%s' "$resolved"
}

# common::getpwent / common::getgrent: the passwd (group) entry of the user (group) the container
# maps to, the host's id outside the user namespace.
common::getpwent() {
    local inside outside rest
    read -r inside outside rest </proc/self/uid_map
    getent passwd "$outside"
}

common::getgrent() {
    local inside outside rest
    read -r inside outside rest </proc/self/gid_map
    getent group "$outside"
}

# common::mountpoint PATH: the mount point PATH is on.
common::mountpoint() {
    local path
    path="$(common::realpath "${1-}")"
    while [ -n "$path" ] && ! mountpoint -q "$path"; do path="${path%/*}"; done
    printf '%s' "${path:-/}"
}

# common::debarch MACHINE: Debian's name of a machine (uname -m) architecture.
common::debarch() {
    case "${1-}" in
    x86_64) printf 'amd64' ;;
    aarch64) printf 'arm64' ;;
    ppc64le) printf 'ppc64le' ;;
    *) common::err "Unsupported architecture: ${1-}" ;;
    esac
}

# common::chdir DIRECTORY
common::chdir() {
    cd -- "${1-}" 2>/dev/null || common::err "Could not change directory: ${1-}"
}

# common::read ARGS...: read that does not fail at the end of input.
common::read() {
    read "$@" || :
}

# common::readstrarray NAME STRING: the lines of STRING into the array NAME.
common::readstrarray() {
    [ -z "${2-}" ] || readarray -t "$1" <<<"$2"
}

# common::mktmpdir PREFIX: a private temporary directory.
common::mktmpdir() {
    umask 077
    mktemp -d -p "${ENROOT_TEMP_PATH:-${TMPDIR:-/tmp}}" "${1-enroot}.XXXXXXXXXX"
}

# common::rmall PATH: PATH and all below it, on its own file system only.
common::rmall() {
    rm --one-file-system --preserve-root -rf -- "${1-}" 2>/dev/null ||
        { chmod -f -R +rwX -- "${1-}" || :; rm --one-file-system --preserve-root -rf -- "${1-}"; }
}

# common::fixperms PATH: the owner may read and enter everything, and write every directory.
common::fixperms() {
    chmod -f -R u+rX -- "${1-}" || :
    find "${1-}" -maxdepth 15 -type d ! -perm -u=w -exec chmod -f u+w {} + || :
}

# common::envfmt FILE: FILE cleaned to NAME=VALUE lines, as enroot reads environment files.
common::envfmt() {
    sed -i -e 's/^[[:space:]]*//' -e '/^#/d' -e '/^$/d' -e '/^[[:alpha:]_][[:alnum:]_]*=/!d' -e '/^ENROOT_/d' \
        -e "s/^\\([[:alpha:]_][[:alnum:]_]*\\)=[\"']\\(.*\\)[\"'][[:space:]]*\$/\\1=\\2/" "${1-}"
}

# common::runparts list|exec SUFFIX DIRECTORY: the files DIRECTORY/*SUFFIX, listed or run.
common::runparts() {
    local file
    for file in "${3-}"/*"${2-}"; do
        [ -e "$file" ] || continue
        case "${1-}" in
        list) printf '%s\n' "$file" ;;
        exec) if [ -x "$file" ]; then "$file" || common::err "$file exited with return code $?"; fi ;;
        esac
    done
}
