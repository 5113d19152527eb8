#!/usr/bin/env bash
# img-squash beside the established ways of turning image layers into one squashfs, on the same
# multi-layer image, in one run, on a tmpfs (disk timings on these VMs are unreliable):
#   (a) the enroot way: extract the layers with tar (pigz / zstd) into a tmpfs, apply the
#       whiteouts, then mksquashfs over the result (its most favourable case: no overlay mount)
#   (b) tar2sqfs (squashfs-tools-ng) over the flattened, uncompressed tar
#   (c) mksquashfs alone over the already-extracted tree
#   (d) pigz -dc of the gzip layers (the decompression floor with zlib), and igzip -dc (ISA-L)
# Same compressor (zstd), level (3) and block size (128K) everywhere, all cores, all files root.
#
# The image: this machine's /usr/bin, /usr/sbin, /usr/lib/x86_64-linux-gnu and /etc (a Debian
# system) as one layer, /usr/share as a second, and a third layer that
# deletes (whiteouts, an opaque directory) and changes files; once with gzip layers, once with
# zstd layers.
#
#   bench/img-squash.sh [RUNS]        (root; needs contrib/install-deps.sh, squashfs-tools-ng, pigz, isal)
# IMG_SQUASH=path compares another build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
jobs=$(nproc)

for tool in mksquashfs tar2sqfs pigz igzip zstd python3; do
    command -v "$tool" >/dev/null || { echo "bench: error: $tool is missing (apt-get install squashfs-tools squashfs-tools-ng pigz isal zstd)" >&2; exit 1; }
done
if [ -n "${IMG_SQUASH:-}" ]; then
    squash=$IMG_SQUASH
else
    contrib/release-build.sh --product img-squash >/dev/null
    squash="$(contrib/release-build.sh --show-bin-path)/img-squash"
fi

work=$(mktemp -d /tmp/bench-img-squash.XXXXXX)
cleanup() { umount "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mount -t tmpfs -o size=12g tmpfs "$work"

# --- The image ---------------------------------------------------------------------------------
echo "bench: building the layers" >&2
tar -C / -cf "$work/1.tar" usr/bin usr/sbin usr/lib/x86_64-linux-gnu etc 2>/dev/null || true
tar -C / -cf "$work/2.tar" usr/share 2>/dev/null || true
python3 - "$work/3.tar" <<'EOF'
import io, os, sys, tarfile
out = tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT)
def add(name, data=b"", kind=tarfile.REGTYPE, mode=0o644):
    t = tarfile.TarInfo(name); t.type = kind; t.mode = mode; t.mtime = 1700000000; t.size = len(data)
    out.addfile(t, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
# delete: documentation, locales, a library directory; replace the man pages (opaque directory)
add("usr/share/.wh.doc"); add("usr/share/.wh.locale"); add("usr/lib/x86_64-linux-gnu/.wh.perl")
add("usr/share/man", kind=tarfile.DIRTYPE, mode=0o755); add("usr/share/man/.wh..wh..opq")
add("usr/share/man/README", b"man pages removed from this image\n")
# change: new versions of some files, a new 64 MiB file
for name in ("etc/hostname", "etc/os-release", "usr/bin/env"):
    add(name, os.urandom(4096), mode=0o755)
add("opt/data/blob", os.urandom(1 << 26))
out.close()
EOF
for n in 1 2 3; do
    pigz -6 -p "$jobs" -c "$work/$n.tar" > "$work/$n.tar.gz"
    zstd -q -3 -T"$jobs" "$work/$n.tar" -o "$work/$n.tar.zst"
    rm "$work/$n.tar"
done
gz=("$work/1.tar.gz" "$work/2.tar.gz" "$work/3.tar.gz")
zs=("$work/1.tar.zst" "$work/2.tar.zst" "$work/3.tar.zst")

# The merged tree (what the layers amount to) and its tar, for (b) and (c).
extract() {  # extract DIR DECOMPRESSOR LAYER...: layers in order, whiteouts applied as overlayfs would
    local dir=$1 program=$2; shift 2
    mkdir -p "$dir"
    for layer in "$@"; do
        # whiteouts of this layer remove what the lower layers left
        while IFS= read -r entry; do
            base=${entry##*/}; parent=${entry%/*}; [ "$parent" = "$entry" ] && parent=.
            if [ "$base" = ".wh..wh..opq" ]; then
                find "$dir/$parent" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || true
            else
                rm -rf "$dir/$parent/${base#.wh.}"
            fi
        done < <(tar -I "$program" -tf "$layer" | grep -E '(^|/)\.wh\.' || true)
        tar -I "$program" -C "$dir" -xpf "$layer" --exclude='*.wh.*'
    done
}
extract "$work/tree" "pigz -dc" "${gz[@]}"
tar -C "$work/tree" -cf "$work/flat.tar" .
entries=$(find "$work/tree" | wc -l)
tree_mb=$(du -sm "$work/tree" | cut -f1)
gz_mb=$(( ($(stat -c %s "${gz[@]}" | paste -sd+ | bc)) >> 20 ))
zs_mb=$(( ($(stat -c %s "${zs[@]}" | paste -sd+ | bc)) >> 20 ))

# --- Timing ------------------------------------------------------------------------------------
median() { sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.2f", m}'; }
# time_it NAME COMMAND...: median wall seconds of $runs runs; peak RSS of the last run in $peak
time_it() {
    local name=$1; shift
    local times=()
    for _ in $(seq "$runs"); do
        rm -rf "$work/out" "$work/x" && mkdir -p "$work/out"
        sync
        /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        times+=("$(cut -d' ' -f1 "$work/time")")
    done
    peak=$(( $(cut -d' ' -f2 "$work/time") / 1024 ))
    result[$name]=$(printf '%s\n' "${times[@]}" | median)
    memory[$name]=$peak
    if [ -f "$work/out/image.sqsh" ]; then size[$name]=$(stat -c %s "$work/out/image.sqsh"); fi
    printf '%-46s %6s s %6s MiB\n' "$name" "${result[$name]}" "$peak" >&2
}
declare -A result memory size
mk=(-comp zstd -Xcompression-level 3 -b 131072 -processors "$jobs" -all-root -noappend -quiet -no-progress)
time_it "img-squash, gzip layers" "$squash" -q -o "$work/out/image.sqsh" "${gz[@]}"
time_it "img-squash, zstd layers" "$squash" -q -o "$work/out/image.sqsh" "${zs[@]}"
time_it "(a) enroot way, gzip: pigz+tar, mksquashfs" bash -c "$(declare -f extract); extract $work/x 'pigz -dc' ${gz[*]} && mksquashfs $work/x $work/out/image.sqsh ${mk[*]}"
time_it "(a) enroot way, zstd: zstd+tar, mksquashfs" bash -c "$(declare -f extract); extract $work/x 'zstd -dc' ${zs[*]} && mksquashfs $work/x $work/out/image.sqsh ${mk[*]}"
time_it "(b) tar2sqfs over the flattened tar" bash -c "tar2sqfs -q -f -c zstd -X level=3 -b 131072 -j $jobs -d uid=0,gid=0 $work/out/image.sqsh < $work/flat.tar"
time_it "(c) mksquashfs over the extracted tree" mksquashfs "$work/tree" "$work/out/image.sqsh" "${mk[@]}"
time_it "(d) pigz -dc of the gzip layers" bash -c "pigz -dc ${gz[*]} > /dev/null"
time_it "(d') igzip -dc (ISA-L) of the gzip layers" bash -c "igzip -dc ${gz[*]} > /dev/null"
time_it "zstd -dc of the zstd layers" bash -c "zstd -dc ${zs[*]} > /dev/null"

ratio() { echo "scale=2; ${result[$1]} / ${result[$2]}" | bc; }
echo
echo "image: 3 layers, $gz_mb MiB gzip / $zs_mb MiB zstd, merged tree $tree_mb MiB, $entries entries; $runs runs each, median"
for name in "img-squash, gzip layers" "img-squash, zstd layers" "(a) enroot way, gzip: pigz+tar, mksquashfs" \
    "(a) enroot way, zstd: zstd+tar, mksquashfs" "(b) tar2sqfs over the flattened tar" "(c) mksquashfs over the extracted tree" \
    "(d) pigz -dc of the gzip layers" "(d') igzip -dc (ISA-L) of the gzip layers" "zstd -dc of the zstd layers"; do
    printf '%-46s %6s s  peak %5s MiB  %s\n' "$name" "${result[$name]}" "${memory[$name]}" "${size[$name]:+size ${size[$name]}}"
done
echo "gzip layers: img-squash / enroot way:  $(ratio "img-squash, gzip layers" "(a) enroot way, gzip: pigz+tar, mksquashfs")x (goal <= 0.5)"
echo "zstd layers: img-squash / tar2sqfs:    $(ratio "img-squash, zstd layers" "(b) tar2sqfs over the flattened tar")x (goal <= 1.2)"
echo "zstd layers: img-squash / mksquashfs:  $(ratio "img-squash, zstd layers" "(c) mksquashfs over the extracted tree")x (goal <= 1.2)"
echo "gzip layers: img-squash / pigz -dc:    $(ratio "img-squash, gzip layers" "(d) pigz -dc of the gzip layers")x (goal <= 1.3)"
echo "output size: img-squash / mksquashfs:  $(echo "scale=4; ${size["img-squash, gzip layers"]} / ${size["(c) mksquashfs over the extracted tree"]}" | bc) (goal <= 1.02)"
