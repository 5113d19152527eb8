#!/usr/bin/env bash
# Installs the Debian 12 packages that the toolbox builds against and that its tests use.
# Idempotent: apt runs only when a package is missing. Needs root (or sudo).
set -euo pipefail

packages=(
    # build: the system libraries of Package.swift's C targets
    pkg-config libzstd-dev zlib1g-dev libisal-dev libcurl4-openssl-dev libsquashfuse-dev libfuse3-dev
    # tests and the demo: real squashfs images, gzip data, privilege dropping, a real registry on
    # loopback (the CNCF distribution server), image pushes, htpasswd for Basic auth
    squashfs-tools squashfuse busybox-static gzip util-linux curl openssl
    docker-registry skopeo apache2-utils python3 bc
    # img-squash's tests: the reference unpacker (umoci), zstd layers
    umoci zstd
    # ns-enter's tests: the overlay fallback; getfattr (extended attributes in the container, the
    # cache's seals)
    fuse-overlayfs attr
    # the site hooks: glibc's ldconfig (the library hooks), Dropbear (the SSH hook); their tests:
    # a musl loader for an Alpine-like image, a C compiler for the fake host libraries
    libc-bin dropbear-bin musl gcc
    # the srun wrapper's tests: a real single-node Slurm with munge
    slurm-wlm munge
    # img-build: Charliecloud's unprivileged builder (ch-image; it brings buildah, which the
    # tests use too), its Python modules, git for its build cache
    charliecloud-builders python3-lark python3-requests git
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "install-deps: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "install-deps: error: swift is not on PATH" >&2
    echo "  hint: install Swift 6 (https://www.swift.org/install/linux/) and put its usr/bin on PATH" >&2
    exit 1
fi
