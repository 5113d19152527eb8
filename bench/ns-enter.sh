#!/usr/bin/env bash
# ns-enter's start-up beside the established ways of starting a command in a squashfs image
# without root, in one run, on the same image, as the same ordinary user (created here):
#   ns-enter --image IMG -- /bin/true          (user namespace, FUSE server, overlay, system mounts)
#     also with the site hooks of contrib/hooks.d installed (all off; Slurm's on)
#   unshare -Urm + squashfuse_ll + chroot      (the bare sequence: no overlay, no system mounts)
#   ch-run IMG -- /bin/true                    (Charliecloud, libsquashfuse in process)
#   crun run (rootless, an unpacked bundle)    (when crun runs here)
#   chroot into an already mounted image       (unshare -Ur chroot: the floor for joining)
#   ns-enter --join PID -- /bin/true           (a task joining a running container)
# and 32 tasks starting at once in one shared container (ns-enter --name).
#
#   bench/ns-enter.sh [RUNS]     (root; needs contrib/install-deps.sh, hyperfine, charliecloud-runtime, crun)
# NS_ENTER=path compares another build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
user=tbxbench

for tool in hyperfine mksquashfs squashfuse_ll python3 setpriv; do
    command -v "$tool" >/dev/null || { echo "bench: error: $tool is missing (apt-get install hyperfine squashfs-tools squashfuse)" >&2; exit 1; }
done
if [ -n "${NS_ENTER:-}" ]; then
    nsenter=$NS_ENTER
else
    for product in ns-enter hook-run toolbox-hook; do
        contrib/release-build.sh --product "$product" >/dev/null
    done
    nsenter="$(contrib/release-build.sh --show-bin-path)/ns-enter"
fi
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh "$user"
chmod 666 /dev/fuse
uid=$(id -u "$user"); gid=$(id -g "$user")
as_user=(setpriv --reuid="$uid" --regid="$gid" --clear-groups env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin USER=$user HOME=/tmp)

work=$(mktemp -d /tmp/bench-ns-enter.XXXXXX)
chmod 755 "$work"
holder=""
cleanup() {
    [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
    umount "$work/premounted" 2>/dev/null || true
    umount "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mount -t tmpfs -o size=2g,mode=755 tmpfs "$work"

# --- The image: busybox with the directories every runtime expects ------------------------------
root="$work/rootfs"
mkdir -p "$root"/{bin,etc,dev,proc,sys,tmp,home,mnt,run,var/tmp}
cp /bin/busybox "$root/bin/"
for applet in sh true ls cat sleep; do ln -s busybox "$root/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
touch "$root/etc/hosts" "$root/etc/resolv.conf"
image="$work/image.sqsh"
mksquashfs "$root" "$image" -quiet -noappend -all-root -comp zstd >/dev/null
chmod 644 "$image"
mkdir "$work/mnt" "$work/premounted" "$work/home"
chown "$uid:$gid" "$work/mnt" "$work/home"

# The already mounted image (for the chroot floor), mounted once by root for everyone.
squashfuse_ll -o allow_other "$image" "$work/premounted"

# A running container to join: its first task sleeps while the benchmark joins it.
"${as_user[@]}" "$nsenter" --image "$image" --name bench-join -- /bin/sleep 3600 &
holder_task=$!
for _ in $(seq 100); do
    pid=$(cat "/tmp/toolbox-$uid/containers/bench-join.pid" 2>/dev/null || true)
    [ -n "$pid" ] && break
    sleep 0.05
done
holder=$holder_task

# crun: an unpacked rootless bundle, if crun can run here (cgroup v1/v2 hybrids refuse it).
crun_cmd=()
if command -v crun >/dev/null; then
    bundle="$work/bundle"
    mkdir -p "$bundle"
    cp -a "$root" "$bundle/rootfs"
    (cd "$bundle" && crun spec --rootless && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
c["linux"].pop("resources", None)
json.dump(c, open("config.json", "w"))
PY
    )
    chown -R "$uid:$gid" "$bundle"
    if "${as_user[@]}" crun --cgroup-manager=disabled --root "$work/home/crun" run --bundle "$bundle" bench-probe >/dev/null 2>&1; then
        crun_cmd=("crun rootless (unpacked dir)" "${as_user[*]} crun --cgroup-manager=disabled --root $work/home/crun run --bundle $bundle bench-\$RANDOM")
    else
        echo "bench: crun cannot run here (left out)" >&2
    fi
fi

mkdir "$work/cache"
chown "$uid:$gid" "$work/cache"
# The site hooks of contrib/hooks.d installed, none enabled by the (absent) annotations: Slurm's
# is on by default where Slurm is installed (it is here when install-deps ran), the others off.
mkdir -p "$work/sysconf"
cp -r contrib/hooks.d "$work/sysconf/hooks.d"
names=("ns-enter" "ns-enter, NS_ENTER_CACHE (warm)" "ns-enter, site hooks installed (all off)" "ns-enter, site hooks installed (Slurm on)" "unshare+squashfuse_ll+chroot" "ch-run (squashfs)")
commands=(
    "${as_user[*]} $nsenter --image $image -- /bin/true"
    "${as_user[*]} NS_ENTER_CACHE=$work/cache $nsenter --image $image -- /bin/true"
    "${as_user[*]} TOOLBOX_SYSCONF_PATH=$work/sysconf ENROOT_SLURM_HOOK=0 $nsenter --image $image -- /bin/true"
    "${as_user[*]} TOOLBOX_SYSCONF_PATH=$work/sysconf $nsenter --image $image -- /bin/true"
    "${as_user[*]} unshare -Urm sh -c 'squashfuse_ll $image $work/mnt && chroot $work/mnt /bin/true && umount $work/mnt'"
    "${as_user[*]} ch-run $image -- /bin/true"
)
if [ ${#crun_cmd[@]} -gt 0 ]; then names+=("${crun_cmd[0]}"); commands+=("${crun_cmd[1]}"); fi
names+=("chroot, already mounted" "ns-enter --join")
commands+=(
    "${as_user[*]} unshare -Ur chroot $work/premounted /bin/true"
    "${as_user[*]} $nsenter --join $pid -- /bin/true"
)

args=()
for i in "${!names[@]}"; do args+=(-n "${names[$i]}" "${commands[$i]}"); done
echo "bench: start-up, $runs runs each" >&2
hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/start.json" "${args[@]}" >/dev/null 2>&1 \
    || hyperfine --warmup 10 --runs "$runs" --export-json "$work/start.json" "${args[@]}" >/dev/null

# 32 tasks at once in one container (one creates it, 31 join), beside 32 plain chroots.
cat > "$work/tasks.sh" <<SH
#!/bin/sh
for i in \$(seq 32); do $nsenter --image $image --name bench-32-\$\$ -- /bin/true & done
wait
SH
cat > "$work/chroots.sh" <<SH
#!/bin/sh
for i in \$(seq 32); do unshare -Ur chroot $work/premounted /bin/true & done
wait
SH
chmod 755 "$work/tasks.sh" "$work/chroots.sh"
hyperfine -N --warmup 3 --runs 30 --export-json "$work/tasks.json" \
    -n "32 tasks: ns-enter --name" "${as_user[*]} $work/tasks.sh" \
    -n "32 tasks: chroot, already mounted" "${as_user[*]} $work/chroots.sh" >/dev/null

python3 - "$work/start.json" "$work/tasks.json" <<'PY'
import json, sys
start = json.load(open(sys.argv[1]))["results"]
tasks = json.load(open(sys.argv[2]))["results"]
ours = start[0]["median"]
print(f"{'start-up of /bin/true':42} {'median':>9} {'ratio':>7}")
for r in start:
    print(f"{r['command']:42} {r['median']*1000:7.2f} ms {r['median']/ours:6.2f}x")
floor = next(r for r in start if r["command"].startswith("chroot"))["median"]
cached = next(r for r in start if "CACHE" in r["command"])["median"]
join = next(r for r in start if r["command"] == "ns-enter --join")["median"]
chrun = next(r for r in start if r["command"].startswith("ch-run"))["median"]
print(f"\nns-enter / ch-run: {ours/chrun:.2f}x (goal < 1); with the block cache: {cached/chrun:.2f}x")
print(f"ns-enter --join / chroot into a mounted image: {join/floor:.2f}x (goal < 1.5)")
print()
for r in tasks:
    print(f"{r['command']:42} {r['median']*1000:7.2f} ms")
PY
