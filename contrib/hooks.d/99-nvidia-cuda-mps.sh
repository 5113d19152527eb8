#!/bin/bash
# hook-run-when: annotation com.hooks.nvidia_cuda_mps.enabled
# (hook-run starts this hook only when one of these holds: see hook-run --help.)
# CUDA MPS hook: the CUDA Multi-Process Service control daemon inside the container, so that the
# job's processes share each GPU (GPUs in Exclusive-Process mode, as on Alps, admit one process
# otherwise). Runs after the NVIDIA hook, which brings nvidia-cuda-mps-control.
#
# When: annotation com.hooks.nvidia_cuda_mps.enabled = "true".
# What: the pipe and log directories (private to the container, kept in the hook's state
# directory) bound at MPS_HOOK_PIPE_DIRECTORY and MPS_HOOK_LOG_DIRECTORY; CUDA_MPS_PIPE_DIRECTORY
# and CUDA_MPS_LOG_DIRECTORY set for the job; `nvidia-cuda-mps-control -f` started inside the
# container as a service of the container (stopped when it ends).
#
# Configuration: the defaults below, overridden by
# $TOOLBOX_SYSCONF_PATH/hooks.conf.d/nvidia-cuda-mps.conf (or the job's environment).
set -euo pipefail
hook_name=nvidia-cuda-mps
# lib/common.sh beside the hook's real file (no process started unless the hook is a link).
hook_file="$0"
[ ! -L "$hook_file" ] || hook_file="$(readlink -f "$hook_file")"
[ "${hook_file#*/}" != "$hook_file" ] || hook_file="./$hook_file"
# shellcheck source=lib/common.sh
. "${hook_file%/*}/lib/common.sh"

: "${MPS_HOOK_PIPE_DIRECTORY:=/var/run/nvidia-mps}"
: "${MPS_HOOK_LOG_DIRECTORY:=/var/log/nvidia-mps}"
: "${MPS_HOOK_CONTROL:=nvidia-cuda-mps-control}" # found on PATH inside the container
load_config

enabled com.hooks.nvidia_cuda_mps.enabled || exit 0

state="$HOOK_RUN_STATE_DIR/nvidia-cuda-mps"
mkdir -p -m 0700 "$state/pipe" "$state/log"
{
    mount_line "$state/pipe" "$MPS_HOOK_PIPE_DIRECTORY" x-create=dir,bind,nosuid,nodev
    mount_line "$state/log" "$MPS_HOOK_LOG_DIRECTORY" x-create=dir,bind,nosuid,nodev
} | enroot-mount --root "$ENROOT_ROOTFS" -
set_container_var CUDA_MPS_PIPE_DIRECTORY "$MPS_HOOK_PIPE_DIRECTORY"
set_container_var CUDA_MPS_LOG_DIRECTORY "$MPS_HOOK_LOG_DIRECTORY"
export CUDA_MPS_PIPE_DIRECTORY="$MPS_HOOK_PIPE_DIRECTORY" CUDA_MPS_LOG_DIRECTORY="$MPS_HOOK_LOG_DIRECTORY"
toolbox-hook service --log "$MPS_HOOK_LOG_DIRECTORY/control.out" -- "$MPS_HOOK_CONTROL" -f >/dev/null ||
    die "cannot start $MPS_HOOK_CONTROL inside the container" \
        "the NVIDIA hook brings it (NVIDIA_DRIVER_CAPABILITIES must include compute)"
