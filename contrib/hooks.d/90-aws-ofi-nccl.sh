#!/bin/bash
# hook-run-when: annotation com.hooks.aws_ofi_nccl.enabled
# (hook-run starts this hook only when one of these holds: see hook-run --help.)
# AWS OFI NCCL hook: the NCCL (or RCCL) network plugin over libfabric, so that NCCL in the image
# uses the high-speed network. The CXI hook (89-cxi.sh) is enabled with it.
#
# When: annotation com.hooks.aws_ofi_nccl.enabled = "true".
# What:
#   plugin     the libraries of the variant's directory AWS_OFI_NCCL_ROOT/<variant>/lib (the
#              variant from annotation com.hooks.aws_ofi_nccl.variant, default
#              AWS_OFI_NCCL_DEFAULT_VARIANT; one of AWS_OFI_NCCL_VARIANTS: cuda12, cuda13 and
#              cuda-dl, the one linked dynamically to CUDA, which needs an unversioned
#              libcudart.so in the image; rocm5, rocm6 for AMD) added to the container, the
#              libraries they load added where the image lacks them. With the netstack artifact
#              (com.hooks.netstack.source = "artifact", see 89-cxi.sh) the artifact's plugin
#              (libnccl-net*.so) instead, and the variant is ignored (spec 1.12).
#   variables  AWS_OFI_NCCL_ENV (the CSCS Container Engine's, spec 1.13), each set unless the
#              container already has it: the EDF's [env] wins.
#
# Configuration: the defaults below, overridden by
# $TOOLBOX_SYSCONF_PATH/hooks.conf.d/aws-ofi-nccl.conf (or the job's environment).
set -euo pipefail
hook_name=aws-ofi-nccl
# lib/common.sh beside the hook's real file (no process started unless the hook is a link).
hook_file="$0"
[ ! -L "$hook_file" ] || hook_file="$(readlink -f "$hook_file")"
[ "${hook_file#*/}" != "$hook_file" ] || hook_file="./$hook_file"
# shellcheck source=lib/common.sh
. "${hook_file%/*}/lib/common.sh"

: "${AWS_OFI_NCCL_ROOT:=/opt/aws-ofi-nccl}"
: "${AWS_OFI_NCCL_VARIANTS:=cuda12 cuda13 cuda-dl rocm5 rocm6}"
: "${AWS_OFI_NCCL_DEFAULT_VARIANT:=cuda-dl}"
AWS_OFI_NCCL_ENV="NCCL_NET=AWS Libfabric
FI_PROVIDER=cxi
CUDA_CACHE_DISABLE=1
NCCL_CROSS_NIC=0
NCCL_PXN_DISABLE=1
NCCL_P2P_LEVEL=NVL
NCCL_NET_GDR_C2C=1
NCCL_NET_GDR_READ=1
NCCL_PROTO=^LL128
NCCL_NCHANNELS_PER_NET_PEER=4
FI_CXI_RDZV_PROTO=alt_read
FI_CXI_RDZV_EAGER_SIZE=0
FI_CXI_RDZV_GET_MIN=0
FI_CXI_RDZV_THRESHOLD=0
FI_MR_CACHE_MAX_SIZE=-1
FI_MR_CACHE_MAX_COUNT=524288
FI_CXI_SAFE_DEVMEM_COPY_THRESHOLD=16777216"
load_config

enabled com.hooks.aws_ofi_nccl.enabled || exit 0

variant="$(annotation com.hooks.aws_ofi_nccl.variant)"
where="$(netstack)" || exit 1
if [ "$where" != host ]; then
    # The artifact's own plugin build: no variant to choose.
    [ -z "$variant" ] || note "com.hooks.aws_ofi_nccl.variant ($variant) is ignored with the netstack artifact: its plugin is used"
    mapfile -t plugins < <(existing_files "$where/libnccl-net*.so*")
    [ ${#plugins[@]} -gt 0 ] || die "the netstack artifact $where has no NCCL plugin (libnccl-net*.so)" \
        "check com.hooks.netstack.version and .name, or use com.hooks.netstack.source = \"host\""
    netstack_mount "$where"
else
    variant="${variant:-$AWS_OFI_NCCL_DEFAULT_VARIANT}"
    case " $AWS_OFI_NCCL_VARIANTS " in
    *" $variant "*) ;;
    *) die "com.hooks.aws_ofi_nccl.variant is '$variant'" "use one of: $AWS_OFI_NCCL_VARIANTS" ;;
    esac
    directory="$AWS_OFI_NCCL_ROOT/$variant/lib"
    [ -d "$directory" ] || die "the plugin variant $variant is not installed on this system ($directory)" \
        "use one of the variants in $AWS_OFI_NCCL_ROOT, or ask the site to install it"
    mapfile -t plugins < <(existing_files "$directory/*.so*")
    [ ${#plugins[@]} -gt 0 ] || die "$directory holds no library" \
        "install the plugin's build for this variant there (libnccl-net.so), or choose another com.hooks.aws_ofi_nccl.variant"
fi
toolbox-hook inject --name aws-ofi-nccl --dependencies "${plugins[@]}" ||
    die "cannot bring the NCCL plugin into the container (toolbox-hook's message above)"

while IFS= read -r line; do
    [ -n "$line" ] || continue
    default_container_var "${line%%=*}" "${line#*=}"
done <<<"$AWS_OFI_NCCL_ENV"
