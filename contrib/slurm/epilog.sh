#!/bin/sh
# Slurm Epilog recipe: remove what the toolbox kept on a node for a job that has ended: the image
# blocks its steps shared (the srun wrapper's block cache, with TOOLBOX_SRUN_CACHE set for the
# users), the temporary images of EDF_IMAGESTORE=void and the TaskProlog recipe's lock.
#
# slurm.conf:  Epilog=/etc/slurm/toolbox-epilog.sh      (runs as root on each node of the job)
#
# Set TOOLBOX_SRUN_CACHE here to the value the users get (for example in
# /etc/profile.d/toolbox.sh); it is /tmp unless the site chose another node-local directory.
TOOLBOX_SRUN_CACHE="${TOOLBOX_SRUN_CACHE:-/tmp}"
# Where the users' SCRATCH is, with %u for the user's name (EDF_IMAGESTORE=void puts a step's
# image under $SCRATCH when it is set, so that every node of the step sees it; a step that was
# killed leaves it there), e.g. /capstor/scratch/cscs/%u. Empty: only TMPDIR is cleaned.
TOOLBOX_VOID_SCRATCH="${TOOLBOX_VOID_SCRATCH:-}"
job="${SLURM_JOB_ID:-}"
uid="${SLURM_JOB_UID:-}"
gid="${SLURM_JOB_GID:-$uid}"
user="${SLURM_JOB_USER:-}"
case "$job" in "" | *[!0-9_]*) exit 0 ;; esac
case "$uid" in "" | *[!0-9]*) exit 0 ;; esac
case "$gid" in "" | *[!0-9]*) gid="$uid" ;; esac
# The directories are the user's: removed as the user (a link planted in them leads root nowhere).
as_user() {
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
        setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
    else
        "$@"
    fi
}
as_user rm -rf -- "$TOOLBOX_SRUN_CACHE/toolbox-cache-$uid/$job" 2>/dev/null
as_user rm -rf -- "${TMPDIR:-/tmp}/toolbox-images-$uid/job-$job" 2>/dev/null
as_user rm -f -- "${TMPDIR:-/tmp}/toolbox-prolog-$uid/job-$job.lock" 2>/dev/null
case "$user" in
"" | *[!A-Za-z0-9._-]*) ;;
*)
    if [ -n "$TOOLBOX_VOID_SCRATCH" ]; then
        scratch=$(printf '%s' "$TOOLBOX_VOID_SCRATCH" | sed "s/%u/$user/g")
        as_user rm -rf -- "$scratch/toolbox-images-$uid/job-$job" 2>/dev/null
    fi
    ;;
esac
exit 0
