#!/bin/sh
# Slurm TaskProlog recipe: pull (build) and squash a step's image on the compute node, once per job and
# node, for sites whose login nodes cannot reach the registry (see README.md here).
#
# slurm.conf:  TaskProlog=/etc/slurm/toolbox-task-prolog.sh
#
# The task's environment (TOOLBOX_ENVIRONMENT: the document toolbox-srun rendered) is this
# script's. Its stdout lines "export NAME=VALUE" set variables of the task; messages go to stderr.
# A squashed image already in the store is reused by img-squash without work.
[ -n "${TOOLBOX_ENVIRONMENT:-}" ] || exit 0
command -v img-pull >/dev/null 2>&1 || exit 0
lock="${TMPDIR:-/tmp}/toolbox-prolog-${SLURM_JOB_ID:-0}.lock"
document=$(
    # One task per node and job does the work; the others wait for it here.
    exec 9>"$lock"
    flock 9
    printf '%s' "$TOOLBOX_ENVIRONMENT" | img-pull -q | img-build -q | img-squash -q
) || {
    echo "toolbox-task-prolog: error: cannot pull the image of this step (job ${SLURM_JOB_ID:-?})" >&2
    exit 1
}
# The task gets the document with the squashed image; quotes are Slurm's own.
printf 'export TOOLBOX_ENVIRONMENT=%s\n' "$(printf '%s' "$document" | tr -d '\n')"
