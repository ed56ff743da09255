#!/usr/bin/env bash
# Issue 11 §3 figure: a fresh runner building the ci-edit scenario
# (../shared/bench/scenarios/gen.py) from a registry cache (`--cache-from type=registry`),
# against a docker-registry this script starts on a loopback port, beside what the installed
# BuildKit (docker 26, the docker driver) can do with the same registry.
#
# usage: bench/cache/registry.sh [REPS]    (as root, dockerd running; STRATA=path/to/strata
#        to skip the release build). Resets BuildKit with `docker builder prune -af`, as
#        bench/build does.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
reps=${1:-5}
work=$(mktemp -d)
reg_pid=
cleanup() {
    [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
cd "$repo"
if [ -z "${STRATA:-}" ]; then
    cargo build -q --release --locked -p strata-cli
    STRATA=${CARGO_TARGET_DIR:-$repo/target}/release/strata
fi
S=$STRATA

# The registry, with its access log (one line per request) kept to count blob downloads.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
reg=127.0.0.1:$port
blob_gets() { grep -c '"GET /v2/[^ ]*/blobs/sha256:' "$work/registry.log" || true; }

python3 ../shared/bench/scenarios/gen.py --out "$work/scen" --only ci-edit --base busybox:local >/dev/null
df=$work/scen/ci-edit/Dockerfile ctx=$work/scen/ci-edit/ctx
edit=$ctx/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["edit_file"])' "$work/scen/ci-edit/scenario.json")
cp -a "$ctx" "$work/ctx-edited"
echo "// edited" >> "$work/ctx-edited/${edit#"$ctx"/}"
testdata/mkbase.sh "$work/base.tar"
"$S" --root "$work/a" import "$work/base.tar" busybox:local >/dev/null
"$S" --root "$work/a" save -o "$work/bb.tar" busybox:local
cache="type=registry,ref=$reg/cache/ci-edit:strata"
# Runner A: cold build, exports every step (mode=max) to the registry.
"$S" --root "$work/a" build -q --network none --cache-to "$cache,mode=max" -f "$df" "$ctx" >/dev/null

secs() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fresh() { rm -rf "$work/b"; "$S" --root "$work/b" load -i "$work/bb.tar" >/dev/null; }
hit=() edited=() gets_hit= gets_edit=
for _ in $(seq "$reps"); do
    fresh; before=$(blob_gets)
    hit+=("$(secs "$S" --root "$work/b" build -q --network none --cache-from "$cache" -f "$df" "$ctx")")
    gets_hit=$(( $(blob_gets) - before ))
    fresh; before=$(blob_gets)
    edited+=("$(secs "$S" --root "$work/b" build -q --network none --cache-from "$cache" -f "$df" "$work/ctx-edited")")
    gets_edit=$(( $(blob_gets) - before ))
done
# For scale: the same fresh runner with no cache at all.
cold=()
for _ in $(seq "$reps"); do
    fresh
    cold+=("$(secs "$S" --root "$work/b" build -q --network none -f "$df" "$ctx")")
done

echo "| fresh runner, ci-edit | tool | median s | samples | blob GETs |"
echo "|---|---|---|---|---|"
echo "| no cache (cold) | strata | $(med "${cold[@]}") | ${cold[*]} | 0 |"
echo "| --cache-from registry, all cached | strata | $(med "${hit[@]}") | ${hit[*]} | $gets_hit |"
echo "| --cache-from registry, one source edited | strata | $(med "${edited[@]}") | ${edited[*]} | $gets_edit |"

# BuildKit (docker driver): what it says to a registry cache export and import.
bk_to=$(docker build -q --network=none --cache-to "type=registry,ref=$reg/cache/ci-edit:bk,mode=max" -f "$df" "$ctx" 2>&1 | grep ERROR || true)
docker builder prune -af >/dev/null
bk_from=$(docker build --network=none --progress=plain --cache-from "$cache" -f "$df" "$ctx" 2>&1 | grep -E '^#[0-9]+ ERROR' || true)
# What it can do here: the inline cache (min mode), pushed with the image and pulled back.
docker build -q --network=none --build-arg BUILDKIT_INLINE_CACHE=1 -t "$reg/ci-edit:inline" -f "$df" "$ctx" >/dev/null
docker push -q "$reg/ci-edit:inline" >/dev/null
bk_hit=() bk_edit=() bk_cold=()
bk_fresh() {
    docker rmi -f "$reg/ci-edit:inline" strata-bench-ci-edit >/dev/null 2>&1 || true
    docker builder prune -af >/dev/null
}
for _ in $(seq "$reps"); do
    bk_fresh
    bk_hit+=("$(secs docker build -q --network=none --cache-from "$reg/ci-edit:inline" -t strata-bench-ci-edit -f "$df" "$ctx")")
    bk_fresh
    bk_edit+=("$(secs docker build -q --network=none --cache-from "$reg/ci-edit:inline" -t strata-bench-ci-edit -f "$df" "$work/ctx-edited")")
    bk_fresh
    bk_cold+=("$(secs docker build -q --network=none -t strata-bench-ci-edit -f "$df" "$ctx")")
done
bk_fresh
echo "| no cache (cold, after builder prune) | BuildKit | $(med "${bk_cold[@]}") | ${bk_cold[*]} | |"
echo "| --cache-from inline cache image, all cached | BuildKit | $(med "${bk_hit[@]}") | ${bk_hit[*]} | |"
echo "| --cache-from inline cache image, one source edited | BuildKit | $(med "${bk_edit[@]}") | ${bk_edit[*]} | |"
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
echo "BuildKit (docker $(docker version --format '{{.Server.Version}}'), docker driver):"
echo "  --cache-to type=registry: $bk_to"
echo "  --cache-from type=registry (strata's cache): $bk_from"
echo "registry: $(du -sb "$work/registry" | cut -f1) bytes; strata cache index: $(curl -s -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$reg/v2/cache/ci-edit/manifests/strata" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["manifests"]))') entries"
