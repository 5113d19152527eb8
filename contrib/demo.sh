#!/usr/bin/env bash
# The built-in demo, without network: builds a small busybox OCI image locally, turns it into a
# squashfs with img-pull | img-squash, then runs the pipeline on an EDF that inherits site
# defaults, printing each stage and its output, runs a command in the container, and ends with
# the srun wrapper (bin/srun --environment=demo) running the whole pipeline for one task.
#   contrib/demo.sh            uses the installed commands (contrib/install.sh), else the build
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v edf-merge >/dev/null 2>&1; then
    PATH="$(cd "$here/.." && swift build -c release --show-bin-path):$PATH"
fi

demo="${XDG_CACHE_HOME:-$HOME/.cache}/toolbox-demo"
mkdir -p "$demo/work" "$demo/edf"
image="$demo/busybox.sqsh"
step() { if [ -t 2 ]; then printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; else printf '\n$ %s\n' "$*" >&2; fi; }

if [ ! -f "$image" ]; then
    # A local OCI image (no registry, no network): busybox in one layer, made with umoci.
    layout="$demo/layout"
    rm -rf "$layout" "$demo/bundle"
    umoci init --layout "$layout"
    umoci new --image "$layout:demo"
    umoci unpack --rootless --image "$layout:demo" "$demo/bundle" >/dev/null
    tree="$demo/bundle/rootfs"
    mkdir -p "$tree/bin" "$tree/etc" "$tree/work" "$tree/tmp"
    cp /bin/busybox "$tree/bin/busybox"
    for applet in sh ls cat echo env id pwd uname; do ln -s busybox "$tree/bin/$applet"; done
    echo "NAME=toolbox-demo" > "$tree/etc/os-release"
    umoci repack --image "$layout:demo" "$demo/bundle" >/dev/null
    rm -rf "$demo/bundle"
    step "img-pull --cache $demo/cache $layout --tag demo | img-squash -o $image   # layers -> one squashfs"
    img-pull -q --cache "$demo/cache" "$layout" --tag demo | img-squash -o "$image"
fi
cp "$here/edf/demo/site.toml" "$here/edf/demo/demo.toml" "$demo/edf/"

export EDF_PATH="$demo/edf" TOOLBOX_DEMO_IMAGE="$image" TOOLBOX_DEMO_DIR="$demo"

step "edf-merge --explain demo        # which file set each field"
edf-merge --explain demo
step "edf-merge demo                  # the merged EDF (TOML)"
edf-merge demo
step "edf-merge --json demo | edf-expand   # the rendered environment document"
edf-merge --json demo | edf-expand
step "edf-merge --json demo | edf-expand | ns-enter -e - -- sh -c '...'   # run in the container"
edf-merge --json demo | edf-expand | ns-enter -e - -- sh -c \
    'echo "$GREETING (OMP_NUM_THREADS=$OMP_NUM_THREADS) in $(pwd) on $(. /etc/os-release; echo $NAME) as $(id -un)"; echo "made in the container" > /work/out.txt; ls /'
step "SRUN_REAL=none srun --environment=demo sh -c '...'   # the srun wrapper (no Slurm here: one task, locally)"
SRUN_REAL=none "$here/../bin/srun" --environment=demo -v sh -c \
    'echo "srun --environment=demo: $GREETING from $(. /etc/os-release; echo $NAME)"'
printf '\ndemo: ran in the environment "demo" (EDF_PATH=%s, image %s); it wrote %s\n' "$EDF_PATH" "$image" "$demo/work/out.txt" >&2
