#!/bin/bash
# Slurm hook: the host's Slurm client commands, configuration and munge socket in the container,
# so that srun, scontrol, squeue ... work inside it (needed for `#SBATCH --environment`).
#
# When: on by default on a node with Slurm (SLURM_HOOK_COMMANDS found); ENROOT_SLURM_HOOK = 0 (or
# no, off, false) in the job's environment or the EDF's [env] turns it off, as on Alps (musl
# images such as Alpine need that: the host's commands are glibc programs).
# What:
#   commands   SLURM_HOOK_COMMANDS found on the host's PATH, bound at the same path;
#   paths      SLURM_HOOK_PATHS that exist (configuration, plugins, the munge socket), bound at
#              the same path;
#   libraries  what the commands load (libslurm, libmunge, ...) added where the image lacks them,
#              then the image's linker cache refreshed.
#
# Configuration: the defaults below, overridden by $TOOLBOX_SYSCONF_PATH/hooks.conf.d/slurm.conf
# (or the job's environment).
set -euo pipefail
hook_name=slurm
# lib/common.sh beside the hook's real file (no process started unless the hook is a link).
hook_file="$0"
[ ! -L "$hook_file" ] || hook_file="$(readlink -f "$hook_file")"
[ "${hook_file#*/}" != "$hook_file" ] || hook_file="./$hook_file"
# shellcheck source=lib/common.sh
. "${hook_file%/*}/lib/common.sh"

: "${SLURM_HOOK_COMMANDS:=srun sbatch salloc scontrol squeue sinfo scancel sacct sstat sattach sprio sshare}"
: "${SLURM_HOOK_PATHS:=/etc/slurm /etc/slurm-llnl /usr/lib/x86_64-linux-gnu/slurm-wlm /usr/lib/aarch64-linux-gnu/slurm-wlm /usr/lib64/slurm /usr/lib/slurm /run/munge /var/run/munge}"
: "${SLURM_HOOK_LIBRARIES:=libmunge.so.2}" # loaded by plugins (names in the host's linker cache)
: "${SLURM_HOOK_LDCACHE:=/etc/ld.so.cache}"
load_config

switch="${ENROOT_SLURM_HOOK-}"
[ -n "$switch" ] || switch="$(container_var ENROOT_SLURM_HOOK)"
! is_false "$switch" || exit 0

# Whether a file is one of the toolbox's wrappers (bin/srun, bin/sbatch, bin/salloc: their second
# line says so), read with the shell's own read (no process per command).
toolbox_wrapper() {
    local first="" second=""
    { IFS= read -r -n 200 first && IFS= read -r -n 200 second; } <"$1" 2>/dev/null || :
    [[ "$first" == "#!"* && "$second" == *"the toolbox's "*" wrapper"* ]]
}

# Found on PATH as command -v would, without a subshell per command; Slurm's own commands, not the
# toolbox's wrappers that a user's PATH puts first (in the container, srun is Slurm's srun).
commands=()
IFS=: read -r -a directories <<<"${PATH:-/usr/bin:/bin}"
for name in $SLURM_HOOK_COMMANDS; do
    for directory in "${directories[@]}"; do
        if [ "${directory#/}" != "$directory" ] && [ -f "$directory/$name" ] && [ -x "$directory/$name" ]; then
            case "$name" in srun | sbatch | salloc) ! toolbox_wrapper "$directory/$name" || continue ;; esac
            commands+=("$directory/$name")
            break
        fi
    done
done
[ ${#commands[@]} -gt 0 ] || exit 0

# The commands' real files, resolved in one process (a readlink per command costs a fork each).
mapfile -t real < <(readlink -f "${commands[@]}")
{
    for index in "${!commands[@]}"; do
        mount_line "${real[index]}" "${commands[index]}" x-create=file,bind,ro,nosuid,nodev
    done
    for path in $SLURM_HOOK_PATHS; do
        # /var/run is often a link to /run: bind each real path once.
        if [ -e "$path" ] && [ ! -L "$path" ]; then
            mount_line "$path" "$path" x-create=auto,rbind,nosuid,nodev
        fi
    done
} >>"$ENROOT_MOUNTS" # made by hook-run after the hooks: no enroot-mount process to start

needed=()
for path in "${real[@]}"; do needed+=(--needed-by "$path"); done
# shellcheck disable=SC2086
toolbox-hook inject --name slurm --if-missing --optional --ldcache "$SLURM_HOOK_LDCACHE" "${needed[@]}" $SLURM_HOOK_LIBRARIES ||
    die "cannot bring Slurm's libraries into the container (toolbox-hook's message above)" \
        "check SLURM_HOOK_LDCACHE and SLURM_HOOK_LIBRARIES in hooks.conf.d/slurm.conf"
