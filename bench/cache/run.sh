#!/usr/bin/env bash
# Issue 6 figures: export and import of a build cache on the ci-edit scenario
# (../shared/bench/scenarios/gen.py), strata's `--cache-to/--cache-from type=local`, and
# whether the installed BuildKit can do the same (`docker build --cache-to type=local`).
#
# usage: bench/cache/run.sh [REPS]      (as root; builds target/release/strata first)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
reps=${1:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$repo"
cargo build -q --release -p strata-cli
S=$repo/target/release/strata
python3 ../shared/bench/scenarios/gen.py --out "$work/scen" --only ci-edit --base busybox:local >/dev/null
df=$work/scen/ci-edit/Dockerfile ctx=$work/scen/ci-edit/ctx
testdata/mkbase.sh "$work/base.tar"
"$S" --root "$work/a" import "$work/base.tar" busybox:local >/dev/null
"$S" --root "$work/a" save -o "$work/bb.tar" busybox:local
"$S" --root "$work/a" build -q -f "$df" "$ctx" >/dev/null          # runner A's cold build

secs() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
echo "| measure | median s | samples |"
echo "|---|---|---|"
noop=() export=() import=()
for _ in $(seq "$reps"); do
    noop+=("$(secs "$S" --root "$work/a" build -q -f "$df" "$ctx")")
    rm -rf "$work/cache"
    export+=("$(secs "$S" --root "$work/a" build -q --cache-to "type=local,dest=$work/cache,mode=max" -f "$df" "$ctx")")
    rm -rf "$work/b"; "$S" --root "$work/b" load -i "$work/bb.tar" >/dev/null
    import+=("$(secs "$S" --root "$work/b" build -q --cache-from "type=local,src=$work/cache" -f "$df" "$ctx")")
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| A: no-op rebuild | $(med "${noop[@]}") | ${noop[*]} |"
echo "| A: no-op rebuild + --cache-to (mode=max, zstd) | $(med "${export[@]}") | ${export[*]} |"
echo "| B: fresh root, --cache-from, all cached | $(med "${import[@]}") | ${import[*]} |"
echo
echo "cache directory: $(du -sb "$work/cache" | cut -f1) bytes"
echo "runner B's store blobs after import: $(du -sb "$work/b/blobs" | cut -f1) bytes (base image alone: $(stat -c %s "$work/bb.tar") bytes as a tar)"
echo
echo "BuildKit (docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')):"
docker build -q --cache-to "type=local,dest=$work/bk-cache" -f "$df" "$ctx" 2>&1 | head -2 || true
