#!/bin/bash
# hook-run-when: variable NVIDIA_VISIBLE_DEVICES
# (hook-run starts this hook only when one of these holds: see hook-run --help.)
# NVIDIA GPU hook: the host's GPU driver in the container (what enroot's 98-nvidia.sh does with
# libnvidia-container, done with toolbox-hook).
#
# When: NVIDIA_VISIBLE_DEVICES is set and is not empty, "void" or "none": the job's environment
# wins over the container's (image Env, EDF [env]; NGC images set it to "all"). On a node
# without an NVIDIA driver the hook does nothing, with a note.
# What:
#   devices    /dev/nvidiactl, /dev/nvidia-uvm, /dev/nvidia-uvm-tools, /dev/nvidia-modeset and the
#              /dev/nvidiaN of the visible GPUs only (indexes in PCI bus order, as nvidia-smi
#              numbers them, or GPU-UUIDs, or "all"), /dev/gdrdrv (GDRCopy) with compute. With the
#              host's /dev (the default) every node is there anyway, as with enroot; with
#              ENROOT_RESTRICT_DEV=y the container has only the visible ones.
#   libraries  the driver's libraries of the capabilities in NVIDIA_DRIVER_CAPABILITIES (comma
#              separated; default "utility", "all" for every one), found in the host's linker
#              cache, added to the container or replacing its copies (an image's CUDA
#              forward-compatibility libcuda in a compat directory stays when it is newer than
#              the driver), a libcuda.so link beside libcuda.so.1 (for -lcuda and dlopen), then
#              the container's linker cache refreshed (toolbox-hook inject).
#              With compat32, also the 32-bit (i386) builds of those libraries that the host's
#              linker cache lists, into /opt/toolbox/nvidia/lib32 or over the image's 32-bit copies.
#   binaries   nvidia-smi & co. (utility), the CUDA MPS daemons (compute), bound into /usr/bin.
#   checks     NVIDIA_REQUIRE_* of the image (cuda and driver constraints; see below), unless
#              NVIDIA_DISABLE_REQUIRE is set.
# Not done: brand and arch constraints are taken as met.
#
# Configuration: the defaults below, overridden by $TOOLBOX_SYSCONF_PATH/hooks.conf.d/nvidia.conf
# (or the job's environment for the first four).
set -euo pipefail
hook_name=nvidia
# lib/common.sh beside the hook's real file (no process started unless the hook is a link).
hook_file="$0"
[ ! -L "$hook_file" ] || hook_file="$(readlink -f "$hook_file")"
[ "${hook_file#*/}" != "$hook_file" ] || hook_file="./$hook_file"
# shellcheck source=lib/common.sh
. "${hook_file%/*}/lib/common.sh"

: "${NVIDIA_HOOK_LDCACHE:=/etc/ld.so.cache}"                  # the host's linker cache
: "${NVIDIA_HOOK_DEVICE_DIR:=/dev}"                           # where the host's device nodes are
: "${NVIDIA_HOOK_BINARY_PATH:=/usr/bin:/usr/sbin:/bin:/sbin}" # where the driver's tools are
: "${NVIDIA_HOOK_PROC:=/proc/driver/nvidia}"                  # the driver's /proc (GPU-UUIDs)
NVIDIA_HOOK_LIBRARIES_utility="libnvidia-ml.so libnvidia-cfg.so"
NVIDIA_HOOK_LIBRARIES_compute="libcuda.so libcudadebugger.so libnvidia-opencl.so libnvidia-ptxjitcompiler.so
    libnvidia-fatbinaryloader.so libnvidia-allocator.so libnvidia-compiler.so libnvidia-nvvm.so libnvidia-gpucomp.so
    libnvidia-pkcs11.so libnvidia-pkcs11-openssl3.so"
NVIDIA_HOOK_LIBRARIES_video="libvdpau_nvidia.so libnvidia-encode.so libnvidia-opticalflow.so libnvcuvid.so"
NVIDIA_HOOK_LIBRARIES_graphics="libnvidia-eglcore.so libnvidia-glcore.so libnvidia-tls.so libnvidia-glsi.so
    libnvidia-rtcore.so libnvoptix.so libGLX_nvidia.so libEGL_nvidia.so libGLESv2_nvidia.so libGLESv1_CM_nvidia.so
    libnvidia-glvkspirv.so"
NVIDIA_HOOK_LIBRARIES_display="libnvidia-fbc.so libnvidia-ifr.so"
NVIDIA_HOOK_BINARIES_utility="nvidia-smi nvidia-debugdump nvidia-persistenced"
NVIDIA_HOOK_BINARIES_compute="nvidia-cuda-mps-control nvidia-cuda-mps-server"
load_config

visible="${NVIDIA_VISIBLE_DEVICES-$(container_var NVIDIA_VISIBLE_DEVICES)}"
case "$visible" in "" | void | none) exit 0 ;; esac
capabilities="${NVIDIA_DRIVER_CAPABILITIES-$(container_var NVIDIA_DRIVER_CAPABILITIES)}"
[ -n "$capabilities" ] || capabilities=utility
[ "$capabilities" != all ] || capabilities=compute,compat32,display,graphics,utility,video

if [ ! -e "$NVIDIA_HOOK_DEVICE_DIR/nvidiactl" ]; then
    note "no NVIDIA driver on this node ($NVIDIA_HOOK_DEVICE_DIR/nvidiactl): no GPU in the container"
    exit 0
fi

# NVIDIA_REQUIRE_*: what the image needs of the driver, as libnvidia-container reads it: in one
# variable, alternatives separated by spaces, each a comma-separated list of constraints that must
# all hold; every variable must hold. Constraints on cuda (the CUDA version the driver supports)
# and driver (its version) are checked; brand and arch ones are taken as met (not read here).
# NVIDIA_DISABLE_REQUIRE turns the checks off. The job's value of a variable wins over the image's.

# 0 when version $1 compares to $3 as operator $2 says (dotted numbers, missing parts are 0).
version_holds() {
    local -a left right
    IFS=. read -r -a left <<<"$1"
    IFS=. read -r -a right <<<"$3"
    local index order=0 count=$((${#left[@]} > ${#right[@]} ? ${#left[@]} : ${#right[@]}))
    for ((index = 0; index < count; index++)); do
        local a=$((10#${left[index]:-0})) b=$((10#${right[index]:-0}))
        if ((a != b)); then
            order=$((a < b ? -1 : 1))
            break
        fi
    done
    case "$2" in
    "=" | "==") ((order == 0)) ;;
    "!=") ((order != 0)) ;;
    "<") ((order < 0)) ;;
    "<=") ((order <= 0)) ;;
    ">") ((order > 0)) ;;
    ">=") ((order >= 0)) ;;
    *) return 2 ;;
    esac
}

# 0 when the constraint $1 (cuda>=12.4, driver<471, brand=tesla) holds on this node.
constraint_holds() {
    local key operator value
    [[ "$1" =~ ^([a-z]+)(==|!=|<=|>=|=|<|>)(.+)$ ]] || die "NVIDIA_REQUIRE constraint '$1' does not parse"         "the image's requirements look like cuda>=12.4 or driver>=470,driver<471; set NVIDIA_DISABLE_REQUIRE=1 to start anyway"
    key=${BASH_REMATCH[1]} operator=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
    case "$key" in
    cuda | driver)
        [[ "$value" =~ ^[0-9]+(\.[0-9]+)*$ ]] || die "NVIDIA_REQUIRE constraint '$1' does not parse: $value is not a version" \
            "the image's requirements look like cuda>=12.4 or driver>=470,driver<471; set NVIDIA_DISABLE_REQUIRE=1 to start anyway"
        ;;
    esac
    case "$key" in
    cuda) version_holds "$driver_cuda" "$operator" "$value" ;;
    driver)
        [[ "$driver_version" =~ ^[0-9]+(\.[0-9]+)+$ ]] || die "cannot tell this node's driver version to check $1" \
            "set NVIDIA_DISABLE_REQUIRE=1 to start without the checks"
        version_holds "$driver_version" "$operator" "$value"
        ;;
    *) return 0 ;;
    esac
}

disable="${NVIDIA_DISABLE_REQUIRE-$(container_var NVIDIA_DISABLE_REQUIRE)}"
mapfile -t required < <(
    { compgen -v NVIDIA_REQUIRE_ || true; } 
    [ ! -r "${ENROOT_ENVIRON-}" ] || sed -n 's/^\(NVIDIA_REQUIRE_[A-Za-z0-9_]*\)=.*/\1/p' "$ENROOT_ENVIRON"
)
if [ ${#required[@]} -gt 0 ] && { [ -z "$disable" ] || is_false "$disable"; }; then
    { read -r _ driver_version && read -r _ driver_cuda; } < <(toolbox-hook driver-versions --ldcache "$NVIDIA_HOOK_LDCACHE") ||
        die "cannot read the driver's versions for the image's NVIDIA_REQUIRE_* (toolbox-hook driver-versions)" \
            "set NVIDIA_DISABLE_REQUIRE=1 to start without the checks"
    declare -A checked=()
    for variable in "${required[@]}"; do
        [ -z "${checked[$variable]-}" ] || continue
        checked[$variable]=1
        expression="${!variable-$(container_var "$variable")}"
        [ -n "$expression" ] || continue
        met=false
        for alternative in $expression; do
            all=true
            IFS=, read -r -a constraints <<<"$alternative"
            for constraint in "${constraints[@]}"; do
                constraint_holds "$constraint" || { all=false; break; }
            done
            if $all; then met=true; break; fi
        done
        $met || die "the image requires $expression ($variable); this node's driver $driver_version supports CUDA $driver_cuda" \
            "use an image made for CUDA $driver_cuda or older, run on nodes with a newer driver, or set NVIDIA_DISABLE_REQUIRE=1 to start anyway"
    done
fi

# The minor numbers of the visible GPUs.
minors=()
all_minors() {
    local node
    for node in "$NVIDIA_HOOK_DEVICE_DIR"/nvidia[0-9]*; do
        if [ -e "$node" ]; then printf '%s\n' "${node##*/nvidia}"; fi
    done
}
# The minor number of the GPU of index $1: the driver's GPUs in PCI bus order (nvidia-smi's and
# CUDA's default order), each with its "Device Minor"; without the driver's /proc, the index.
index_minor() {
    local information index=0 found=false
    for information in "$NVIDIA_HOOK_PROC"/gpus/*/information; do
        [ -r "$information" ] || continue
        found=true
        if [ "$index" = "$1" ]; then
            sed -n 's/^Device Minor:[[:space:]]*//p' "$information"
            return 0
        fi
        index=$((index + 1))
    done
    $found && return 1
    printf '%s\n' "$1"
}
uuid_minor() {
    local information uuid="" minor=""
    for information in "$NVIDIA_HOOK_PROC"/gpus/*/information; do
        [ -r "$information" ] || continue
        uuid=$(sed -n 's/^GPU UUID:[[:space:]]*//p' "$information")
        minor=$(sed -n 's/^Device Minor:[[:space:]]*//p' "$information")
        if [ "$uuid" = "$1" ]; then
            printf '%s\n' "$minor"
            return 0
        fi
    done
    return 1
}
if [ "$visible" = all ]; then
    mapfile -t minors < <(all_minors)
else
    IFS=, read -r -a requested <<<"$visible"
    for device in "${requested[@]}"; do
        device="${device//[[:space:]]/}"
        case "$device" in
        "") ;;
        *[!0-9]*)
            minor=$(uuid_minor "$device") || die "NVIDIA_VISIBLE_DEVICES names $device, which is not a GPU of this node" \
                "use indexes (0,1), GPU-UUIDs as nvidia-smi -L prints them, or all"
            minors+=("$minor")
            ;;
        *)
            minor=$(index_minor "$((10#$device))") || die "NVIDIA_VISIBLE_DEVICES names GPU $device; this node has $(ls -d "$NVIDIA_HOOK_PROC"/gpus/*/ 2>/dev/null | wc -l)" \
                "use indexes from 0 (nvidia-smi -L lists them), GPU-UUIDs, or all"
            minors+=("$minor")
            ;;
        esac
    done
fi

lines=""
for name in nvidiactl nvidia-uvm nvidia-uvm-tools nvidia-modeset; do
    if [ -e "$NVIDIA_HOOK_DEVICE_DIR/$name" ]; then
        lines+=$(mount_line "$NVIDIA_HOOK_DEVICE_DIR/$name" "/dev/$name" x-create=file,bind)$'\n'
    fi
done
for minor in "${minors[@]}"; do
    [ -e "$NVIDIA_HOOK_DEVICE_DIR/nvidia$minor" ] || die "GPU $minor is not on this node (no $NVIDIA_HOOK_DEVICE_DIR/nvidia$minor)" \
        "check NVIDIA_VISIBLE_DEVICES ($visible)"
    lines+=$(mount_line "$NVIDIA_HOOK_DEVICE_DIR/nvidia$minor" "/dev/nvidia$minor" x-create=file,bind)$'\n'
done

libraries=()
binaries=()
required=()
compat32=false
IFS=, read -r -a wanted <<<"$capabilities"
for capability in "${wanted[@]}"; do
    capability="${capability//[[:space:]]/}"
    case "$capability" in
    "") continue ;;
    compat32) compat32=true ;;
    compute | display | graphics | utility | video) ;;
    *) die "NVIDIA_DRIVER_CAPABILITIES names '$capability'" "use compute, compat32, display, graphics, utility, video or all" ;;
    esac
    list="NVIDIA_HOOK_LIBRARIES_$capability"
    # shellcheck disable=SC2206
    libraries+=(${!list-})
    # What the capability is for cannot be missing: CUDA's driver library, NVML.
    case "$capability" in
    compute)
        required+=(libcuda.so)
        # GDRCopy's device, as enroot's hook binds it.
        if [ -e "$NVIDIA_HOOK_DEVICE_DIR/gdrdrv" ]; then
            lines+=$(mount_line "$NVIDIA_HOOK_DEVICE_DIR/gdrdrv" /dev/gdrdrv x-create=file,bind)$'\n'
        fi
        ;;
    utility) required+=(libnvidia-ml.so) ;;
    esac
    list="NVIDIA_HOOK_BINARIES_$capability"
    for binary in ${!list-}; do
        IFS=: read -r -a directories <<<"$NVIDIA_HOOK_BINARY_PATH"
        for directory in "${directories[@]}"; do
            if [ -x "$directory/$binary" ]; then
                binaries+=("$directory/$binary")
                break
            fi
        done
    done
done
for binary in "${binaries[@]}"; do
    lines+=$(mount_line "$(readlink -f "$binary")" "/usr/bin/${binary##*/}" x-create=file,bind,ro,nosuid,nodev)$'\n'
done

# Mounted now, not through $ENROOT_MOUNTS: the CUDA MPS hook starts nvidia-cuda-mps-control from
# these binds before hook-run's own mounts.
printf '%s' "$lines" | enroot-mount --root "$ENROOT_ROOTFS" -
for library in "${required[@]}"; do
    toolbox-hook inject --name nvidia --ldcache "$NVIDIA_HOOK_LDCACHE" "$library" ||
        die "the driver's $library is not in the host's linker cache ($NVIDIA_HOOK_LDCACHE), for NVIDIA_DRIVER_CAPABILITIES $capabilities" \
            "install the NVIDIA driver's user-space libraries on the node, or set NVIDIA_HOOK_LDCACHE in hooks.conf.d/nvidia.conf"
done
# The required ones are in place already: each library once.
optional=()
for library in "${libraries[@]}"; do
    case " ${required[*]} " in *" $library "*) ;; *) optional+=("$library") ;; esac
done
libraries=("${optional[@]}")
if [ ${#libraries[@]} -gt 0 ]; then
    toolbox-hook inject --name nvidia --optional --ldcache "$NVIDIA_HOOK_LDCACHE" "${libraries[@]}" ||
        die "cannot bring the driver's libraries into the container (toolbox-hook's message above)"
fi
# libcuda.so beside an added libcuda.so.1 (what nvidia-container-cli links too): programs linked
# with -lcuda at run time, and dlopen("libcuda.so"). In the container's own tree (in_root).
toolbox_lib="$(in_root /opt/toolbox/nvidia/lib)" || toolbox_lib=""
if [ -n "$toolbox_lib" ] && [ -e "$toolbox_lib/libcuda.so.1" ] && [ ! -e "$toolbox_lib/libcuda.so" ] && [ ! -L "$toolbox_lib/libcuda.so" ]; then
    ln -s libcuda.so.1 "$toolbox_lib/libcuda.so" || die "cannot link libcuda.so to libcuda.so.1 in /opt/toolbox/nvidia/lib"
fi
# compat32: the 32-bit builds of the same libraries, where the node has them (most compute nodes
# do not: then nothing is added).
if $compat32 && [ $((${#required[@]} + ${#libraries[@]})) -gt 0 ]; then
    toolbox-hook inject --name nvidia --compat32 --optional --ldcache "$NVIDIA_HOOK_LDCACHE" "${required[@]}" "${libraries[@]}" ||
        die "cannot bring the driver's 32-bit libraries into the container (toolbox-hook's message above)"
fi
