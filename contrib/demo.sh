#!/usr/bin/env bash
# The built-in demo, without network: builds a small busybox squashfs image locally, then runs the
# pipeline on an EDF that inherits site defaults, printing each stage and its output.
#   contrib/demo.sh            uses the installed commands (contrib/install.sh), else the build
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v edf-merge >/dev/null 2>&1; then
    PATH="$(cd "$here/.." && swift build -c release --show-bin-path):$PATH"
fi

demo="${XDG_CACHE_HOME:-$HOME/.cache}/toolbox-demo"
mkdir -p "$demo/work" "$demo/edf"
image="$demo/busybox.sqsh"
if [ ! -f "$image" ]; then
    tree=$(mktemp -d)
    mkdir -p "$tree/bin" "$tree/etc" "$tree/work" "$tree/tmp"
    cp /bin/busybox "$tree/bin/busybox"
    for applet in sh ls cat echo env id pwd uname; do ln -s busybox "$tree/bin/$applet"; done
    echo "NAME=toolbox-demo" > "$tree/etc/os-release"
    mksquashfs "$tree" "$image.tmp" -all-root -comp zstd -quiet -no-progress >/dev/null
    mv "$image.tmp" "$image"
    rm -rf "$tree"
fi
cp "$here/edf/demo/site.toml" "$here/edf/demo/demo.toml" "$demo/edf/"

export EDF_PATH="$demo/edf" TOOLBOX_DEMO_IMAGE="$image" TOOLBOX_DEMO_DIR="$demo"
step() { if [ -t 2 ]; then printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; else printf '\n$ %s\n' "$*" >&2; fi; }

step "edf-merge --explain demo        # which file set each field"
edf-merge --explain demo
step "edf-merge demo                  # the merged EDF (TOML)"
edf-merge demo
step "edf-merge --json demo | edf-expand   # the rendered environment document"
edf-merge --json demo | edf-expand
printf '\ndemo: the environment "demo" (EDF_PATH=%s) renders; image %s\n' "$EDF_PATH" "$image" >&2
