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
job="${SLURM_JOB_ID:-}"
uid="${SLURM_JOB_UID:-}"
case "$job" in "" | *[!0-9_]*) exit 0 ;; esac
case "$uid" in "" | *[!0-9]*) exit 0 ;; esac
rm -rf -- "$TOOLBOX_SRUN_CACHE/toolbox-cache-$uid/$job"
rm -rf -- "${TMPDIR:-/tmp}/toolbox-images-$uid/job-$job"
rm -f -- "${TMPDIR:-/tmp}/toolbox-prolog-$uid/job-$job.lock"
exit 0
