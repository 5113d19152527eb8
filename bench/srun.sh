#!/usr/bin/env bash
# The container's cost to a Slurm job step: `srun -n N --environment=... true` through the wrapper
# (bin/srun -> toolbox-srun: edf-expand | img-pull | img-squash with a warm image store, then srun
# with every task in ns-enter, one container per node), beside plain `srun -n N true`, in one run,
# on a single-node Slurm started here (slurm-wlm + munge, nothing written to /etc), as an
# ordinary user (created here). Also the wrapper's own overhead without a container
# (srun -n N true through bin/srun, no --environment).
#
#   bench/srun.sh [RUNS] [TASKS]     (root; defaults 20 runs, 32 tasks; needs hyperfine, slurm-wlm, munge)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
tasks=${2:-32}
user=tbxbench
for tool in hyperfine slurmctld slurmd munged mksquashfs setpriv; do
    command -v "$tool" >/dev/null || { echo "bench: error: $tool is missing (contrib/install-deps.sh; apt-get install hyperfine)" >&2; exit 1; }
done
contrib/release-build.sh >/dev/null
bin="$(contrib/release-build.sh --show-bin-path)"
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh "$user"
chmod 666 /dev/fuse
uid=$(id -u "$user"); gid=$(id -g "$user")

S=$(mktemp -d /tmp/bench-srun.XXXXXX)
trap 'contrib/dev/local-slurm.sh stop "$S"' EXIT
contrib/dev/local-slurm.sh start "$S" "$tasks"
export SLURM_CONF=$S/slurm.conf
mkdir -p "$S/home" "$S/store" "$S/edf"

# The image: busybox, squashed; the EDF names the file (a warm image store: nothing to pull).
root="$S/rootfs"
mkdir -p "$root"/{bin,etc,tmp}
cp /bin/busybox "$root/bin/"
for applet in sh true; do ln -s busybox "$root/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
mksquashfs "$root" "$S/image.sqsh" -quiet -noappend -all-root -comp zstd >/dev/null
chmod 644 "$S/image.sqsh"
printf 'image = "%s"\n[env]\nBENCH = "yes"\n' "$S/image.sqsh" >"$S/edf/bench.toml"
chown -R "$uid:$gid" "$S/home" "$S/store"

as_user="setpriv --reuid=$uid --regid=$gid --clear-groups env -i PATH=$PWD/bin:$bin:/usr/bin:/bin HOME=$S/home SLURM_CONF=$SLURM_CONF EDF_PATH=$S/edf EDF_IMAGESTORE=$S/store"
# Every variant once, so that a failure shows before the timings.
$as_user srun -n "$tasks" --environment=bench sh -c '[ "$BENCH" = yes ]'
hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$S/result.md" \
    -n "srun -n $tasks true" "$as_user /usr/bin/srun -n $tasks true" \
    -n "bin/srun -n $tasks true (wrapper, no --environment)" "$as_user $PWD/bin/srun -n $tasks true" \
    -n "srun -n $tasks --environment=bench true" "$as_user $PWD/bin/srun -n $tasks --environment=bench true"
cat "$S/result.md"
