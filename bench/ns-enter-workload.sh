#!/usr/bin/env bash
# What a task sees once it runs, on the same image, in one run, as the same ordinary user:
#   1. reading a large tree (tar of /usr, about 1 GB) through ns-enter's FUSE server, beside
#      squashfuse_ll and the kernel's squashfs (a loop mount, root only);
#   2. a real workload's cold start, python3 -c 'import numpy, scipy.linalg', on a fresh
#      container: ns-enter, ch-run, unshare+squashfuse_ll+chroot, beside a chroot into the
#      unpacked directory (page cache warm) and ns-enter --join into a running container.
# The image is made from this machine's Debian python3 with numpy and scipy (python3-numpy,
# python3-scipy) and the libraries under /usr/lib/x86_64-linux-gnu, squashed with img-squash.
#
#   bench/ns-enter-workload.sh [RUNS]   (root; needs contrib/install-deps.sh, hyperfine,
#                                        charliecloud-runtime, python3-numpy, python3-scipy)
# NS_ENTER / IMG_SQUASH=path compare other builds.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
user=tbxbench

for tool in hyperfine squashfuse_ll setpriv ch-run; do
    command -v "$tool" >/dev/null || { echo "bench: error: $tool is missing (apt-get install hyperfine squashfuse charliecloud-runtime)" >&2; exit 1; }
done
/usr/bin/python3 -c 'import numpy, scipy.linalg' 2>/dev/null \
    || { echo "bench: error: Debian's python3 lacks numpy or scipy (apt-get install python3-numpy python3-scipy)" >&2; exit 1; }
if [ -z "${NS_ENTER:-}" ] || [ -z "${IMG_SQUASH:-}" ]; then
    bin=$(contrib/release-build.sh --show-bin-path)
    contrib/release-build.sh --product ns-enter >/dev/null
    contrib/release-build.sh --product img-squash >/dev/null
fi
nsenter=${NS_ENTER:-$bin/ns-enter}
squash=${IMG_SQUASH:-$bin/img-squash}
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh "$user"
chmod 666 /dev/fuse
uid=$(id -u "$user"); gid=$(id -g "$user")
as_user="setpriv --reuid=$uid --regid=$gid --clear-groups env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin USER=$user HOME=/tmp"

work=$(mktemp -d /tmp/bench-ns-workload.XXXXXX)
chmod 755 "$work"
holder_pid=""
cleanup() {
    [ -n "$holder_pid" ] && kill "$holder_pid" 2>/dev/null || true
    umount "$work/kernel" 2>/dev/null || true
    umount -l "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mount -t tmpfs -o size=8g,mode=755 tmpfs "$work"

# --- The image ---------------------------------------------------------------------------------
echo "bench: building the image (python3, numpy, scipy, /usr/lib/x86_64-linux-gnu)" >&2
tree="$work/tree"
mkdir -p "$tree"/{usr/bin,usr/lib,usr/lib64,etc,dev,proc,sys,tmp,home,mnt,run}
ln -s usr/bin "$tree/bin"; ln -s usr/lib "$tree/lib"; ln -s usr/lib64 "$tree/lib64"
cp -a /usr/bin/python3.11 /usr/bin/tar /usr/bin/cat /usr/bin/true /usr/bin/dash "$tree/usr/bin/"
ln -s dash "$tree/usr/bin/sh"
printf '#!/bin/sh\nexec python3 -c "import numpy, scipy.linalg"\n' > "$tree/usr/bin/bench-import"
chmod 755 "$tree/usr/bin/bench-import"
ln -s python3.11 "$tree/usr/bin/python3"
cp -a /usr/lib/x86_64-linux-gnu /usr/lib/python3.11 /usr/lib/python3 "$tree/usr/lib/"
cp -a /usr/lib64/ld-linux-x86-64.so.2 "$tree/usr/lib64/"
cp -a /etc/ld.so.cache /etc/alternatives "$tree/etc/"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$tree/etc/passwd"; printf 'root:x:0:\n' > "$tree/etc/group"
touch "$tree/etc/hosts" "$tree/etc/resolv.conf"
# Readable by everyone: squashfuse_ll shows the owners as they are (root), ns-enter the user.
chmod -R o+rX "$tree"
tar -C "$tree" -cf "$work/layer.tar" .
image="$work/image.sqsh"
"$squash" -q -o "$image" "$work/layer.tar" >/dev/null
rm "$work/layer.tar"
chmod 644 "$image"
bytes=$(du -sb "$tree/usr" | cut -f1)
mkdir "$work/mnt" "$work/kernel"
chown "$uid:$gid" "$work/mnt"

# --- 1. Read throughput ------------------------------------------------------------------------
echo "bench: reading /usr ($((bytes / 1000000)) MB), $runs runs each" >&2
mount -o loop,ro -t squashfs "$image" "$work/kernel"
read_cmd="tar -cf - -C / usr | cat"   # stdout: hyperfine discards it (an image chroot has no /dev/null)
hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/read.json" \
    -n "ns-enter (FUSE server)" "$as_user $nsenter --image $image -- /bin/sh -c '$read_cmd'" \
    -n "squashfuse_ll" "$as_user unshare -Urm sh -c 'squashfuse_ll $image $work/mnt && chroot $work/mnt /bin/sh -c \"$read_cmd\" && umount $work/mnt'" \
    -n "kernel squashfs (loop, root)" "sh -c 'echo 3 > /proc/sys/vm/drop_caches; chroot $work/kernel /bin/sh -c \"$read_cmd\"'" >/dev/null

# --- 2. Cold start of a real workload ----------------------------------------------------------
echo "bench: python3 -c 'import numpy, scipy.linalg', $((runs * 4)) runs each" >&2
py=/usr/bin/bench-import   # python3 -c 'import numpy, scipy.linalg', as a script: no nested quoting

$as_user "$nsenter" --image "$image" --name bench-workload -- /usr/bin/python3 -c 'import time; time.sleep(3600)' &
holder_pid=$!
for _ in $(seq 200); do
    pid=$(cat "/tmp/toolbox-$uid/containers/bench-workload.pid" 2>/dev/null || true)
    [ -n "$pid" ] && break
    sleep 0.05
done
hyperfine -N --warmup 2 --runs $((runs * 4)) --export-json "$work/python.json" \
    -n "ns-enter" "$as_user $nsenter --image $image -- $py" \
    -n "ch-run (squashfs)" "$as_user ch-run $image -- $py" \
    -n "unshare+squashfuse_ll+chroot" "$as_user unshare -Urm sh -c 'squashfuse_ll $image $work/mnt && chroot $work/mnt $py && umount $work/mnt'" \
    -n "chroot into the directory (warm)" "$as_user unshare -Ur chroot $tree $py" \
    -n "ns-enter --join (warm)" "$as_user $nsenter --join $pid -- $py" >/dev/null

python3 - "$work/read.json" "$work/python.json" "$bytes" <<'PY'
import json, sys
read = json.load(open(sys.argv[1]))["results"]
python = json.load(open(sys.argv[2]))["results"]
size = int(sys.argv[3])
print(f"{'reading /usr (' + str(size // 1000000) + ' MB)':42} {'median':>9} {'MB/s':>7}")
for r in read:
    print(f"{r['command']:42} {r['median']:7.2f} s {size / r['median'] / 1e6:7.0f}")
ours = python[0]["median"]
print(f"\n{'import numpy, scipy.linalg':42} {'median':>9} {'ratio':>7}")
for r in python:
    print(f"{r['command']:42} {r['median']*1000:6.0f} ms {r['median']/ours:6.2f}x")
PY
