#!/bin/sh
# Slurm TaskProlog recipe: pull (build) and squash a step's image on the compute node, once per job and
# node, for sites whose login nodes cannot reach the registry (see README.md here).
#
# slurm.conf:  TaskProlog=/etc/slurm/toolbox-task-prolog.sh
#
# The task's environment (TOOLBOX_ENVIRONMENT: the document toolbox-srun rendered) is this
# script's. Its stdout lines "export NAME=VALUE" set variables of the task, "print TEXT" lines go
# to the task's output (the only way a TaskProlog's messages reach the user).
# Nothing to do (prints nothing) without a document, or when the document's image is squashed
# already (toolbox-srun pulled on the submitting side); a squashed image already in the store is
# reused by img-squash without work.
[ -n "${TOOLBOX_ENVIRONMENT:-}" ] || exit 0
case "$TOOLBOX_ENVIRONMENT" in *'"squash" : {'*) exit 0 ;; esac
command -v img-pull >/dev/null 2>&1 || exit 0

fail() {
    echo "print toolbox-task-prolog: error: $1"
    [ -z "${2:-}" ] || echo "print   hint: $2"
    exit 1
}
# One task per node and job does the work, the others wait for it: a lock in a directory of the
# user's own (another user's file of the same name in a shared /tmp cannot stand in the way);
# contrib/slurm/epilog.sh removes it when the job ends.
locks="${TMPDIR:-/tmp}/toolbox-prolog-$(id -u)"
mkdir -p -m 700 "$locks" 2>/dev/null
[ -d "$locks" ] && [ -O "$locks" ] && [ ! -L "$locks" ] ||
    fail "$locks is not a directory of this user's own" "remove it, or set TMPDIR to a private directory"
lock="$locks/job-${SLURM_JOB_ID:-0}.lock"
errors=$(mktemp "$locks/errors.XXXXXX") || fail "cannot create a file in $locks"
document=$(
    exec 9>"$lock" || exit 1
    flock 9
    # EDF_IMAGESTORE=void: the node's own temporary image, in its TMPDIR (which epilog.sh
    # cleans), not on a shared SCRATCH that nothing would clean.
    if [ "${EDF_IMAGESTORE:-}" = void ]; then unset SCRATCH; fi
    printf '%s' "$TOOLBOX_ENVIRONMENT" | img-pull -q | img-build -q | img-squash -q
) 2>"$errors" || {
    # The stages' own messages, for the user.
    sed 's/^/print /' "$errors"
    rm -f "$errors"
    fail "cannot pull the image of this step (job ${SLURM_JOB_ID:-?}) on $(hostname)"
}
rm -f "$errors"
# The task gets the document with the squashed image; quotes are Slurm's own.
printf 'export TOOLBOX_ENVIRONMENT=%s\n' "$(printf '%s' "$document" | tr -d '\n')"
