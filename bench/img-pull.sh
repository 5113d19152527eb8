#!/usr/bin/env bash
# img-pull against the tools users have today, in one run, on one loopback registry:
#   - curl:   all blobs fetched in parallel to files (the practical limit; no verification)
#   - skopeo: skopeo copy docker://... oci:... (verifies digests)
#   - img-pull, cold cache; img-pull, warm cache; 8 concurrent cold img-pulls of one image
# The image: LAYERS layers of incompressible data, gzip, MB_PER_LAYER MB each (default 6 x 55 MB,
# about 330 MB compressed). Output lands on a tmpfs, so disk timing does not blur the figures.
# Needs root for the tmpfs; packages: docker-registry skopeo curl (contrib/install-deps.sh).
#   bench/img-pull.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
layers=${LAYERS:-6}
mb=${MB_PER_LAYER:-55}
port=${PORT:-5077}

# IMG_PULL=path compares another build (for A/B runs); default: this tree's release build.
if [ -n "${IMG_PULL:-}" ]; then
    pull=$IMG_PULL
else
    # The same build as contrib/install.sh makes.
    contrib/release-build.sh --product img-pull >/dev/null
    pull="$(contrib/release-build.sh --show-bin-path)/img-pull"
fi

work=$(mktemp -d /tmp/bench-img-pull.XXXXXX)
mount -t tmpfs -o size=4g tmpfs "$work"
registry_pid=""
cleanup() {
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null || true
    umount "$work" 2>/dev/null || true
    rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT

# The registry.
mkdir -p "$work/storage"
cat > "$work/config.yml" <<CONF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/storage}}
http: {addr: 127.0.0.1:$port}
CONF
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

# The image, as an OCI layout.
L="$work/layout"
mkdir -p "$L/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' > "$L/oci-layout"
layer_json=""
diff_ids=""
for i in $(seq "$layers"); do
    mkdir -p "$work/l$i"
    head -c "$((mb * 1024 * 1024))" /dev/urandom > "$work/l$i/data$i"
    tar -C "$work/l$i" -cf "$work/l$i.tar" .
    diff=$(sha256sum "$work/l$i.tar" | cut -c1-64)
    gzip -1 -c "$work/l$i.tar" > "$work/l$i.tar.gz"
    d=$(sha256sum "$work/l$i.tar.gz" | cut -c1-64)
    mv "$work/l$i.tar.gz" "$L/blobs/sha256/$d"
    rm -rf "$work/l$i" "$work/l$i.tar"
    size=$(stat -c %s "$L/blobs/sha256/$d")
    layer_json+="${layer_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$size}"
    diff_ids+="${diff_ids:+,}\"sha256:$diff\""
done
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$diff_ids" > "$work/config.json"
c=$(sha256sum "$work/config.json" | cut -c1-64); cs=$(stat -c %s "$work/config.json"); mv "$work/config.json" "$L/blobs/sha256/$c"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$c" "$cs" "$layer_json" > "$work/manifest.json"
m=$(sha256sum "$work/manifest.json" | cut -c1-64); ms=$(stat -c %s "$work/manifest.json"); mv "$work/manifest.json" "$L/blobs/sha256/$m"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' "$m" "$ms" > "$L/index.json"
skopeo copy --quiet --dest-tls-verify=false "oci:$L:1" "docker://127.0.0.1:$port/bench/img:1"
total=$(du -cb "$L"/blobs/sha256/* | tail -1 | cut -f1)
blobs=$(ls "$L/blobs/sha256" | grep -v "^$m$")
rm -rf "$L"
echo "image: $layers layers, $((total / 1000000)) MB compressed; $runs runs each; median seconds" >&2

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
measure() { # name, setup, command
    local name=$1 setup=$2 cmd=$3 times=()
    for _ in $(seq "$runs"); do
        eval "$setup"
        local t0; t0=$(now)
        eval "$cmd"
        times+=("$(echo "$(now) - $t0" | bc)")
    done
    printf '%s\n' "${times[@]}" | median | xargs printf '%-34s %6.3f\n' "$name"
}

url="http://127.0.0.1:$port/v2/bench/img/blobs/sha256:"
results=$(
measure "curl, parallel, to files"     'rm -rf $work/curl; mkdir -p $work/curl' \
    'printf "%s\n" $blobs | xargs -P 10 -I{} curl -sf -o $work/curl/{} ${url}{}'
measure "skopeo copy to an OCI layout"  'rm -rf $work/skopeo' \
    'skopeo copy --quiet --src-tls-verify=false docker://127.0.0.1:$port/bench/img:1 oci:$work/skopeo:1'
measure "img-pull, cold cache"          'rm -rf $work/cache' \
    '$pull -q --allow-http --cache $work/cache 127.0.0.1:$port/bench/img:1 >/dev/null'
measure "img-pull, warm cache"          ':' \
    '$pull -q --allow-http --cache $work/cache 127.0.0.1:$port/bench/img:1 >/dev/null'
measure "img-pull x8 concurrent, cold"  'rm -rf $work/cache' \
    'for i in 1 2 3 4 5 6 7 8; do $pull -q --allow-http --cache $work/cache 127.0.0.1:$port/bench/img:1 >/dev/null & done; wait'
)
echo "$results"
curl_t=$(echo "$results" | awk '/^curl/ {print $NF}')
skopeo_t=$(echo "$results" | awk '/^skopeo/ {print $NF}')
cold_t=$(echo "$results" | awk '/cold cache/ {print $NF}')
warm_t=$(echo "$results" | awk '/warm cache/ {print $NF}')
printf 'img-pull cold / curl:   %.2fx (goal <= 1.15x)\n' "$(echo "$cold_t / $curl_t" | bc -l)"
printf 'img-pull cold / skopeo: %.2fx (goal < 1)\n' "$(echo "$cold_t / $skopeo_t" | bc -l)"
printf 'img-pull warm / cold:   %.1f%% (goal < 5%%)\n' "$(echo "100 * $warm_t / $cold_t" | bc -l)"
