#!/usr/bin/env bash
# Issue 12 §4 figure: seconds for `strata builder prune -a -f` to remove a build cache of
# TOTAL_MB megabytes of layers (default 5120), made of BUILDS builds that each write one
# layer of random bytes (`RUN head -c`, incompressible), with every image removed first so
# that the prune reclaims records, pins, blobs and snapshots (about twice TOTAL_MB on disk:
# each layer is a blob and an unpacked snapshot).
#
# usage: bench/cache/prune.sh [TOTAL_MB] [BUILDS]   (as root)
#   STRATA=path/to/strata   use that binary instead of building target/release/strata
#   WORK=dir                where the store goes (default: a temp dir; needs ~2×TOTAL_MB free)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
total_mb=${1:-5120}
builds=${2:-40}
per_build=$(( total_mb * 1024 * 1024 / builds ))
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
trap 'rm -rf "$work/root" "$work/ctx" "$work/base.tar"' EXIT
if [ -z "${STRATA:-}" ]; then
    (cd "$repo" && cargo build -q --release -p strata-cli)
    STRATA=${CARGO_TARGET_DIR:-$repo/target}/release/strata
fi
S() { "$STRATA" --root "$work/root" "$@"; }
export STRATA_CONFIG=$work/config.json
# The automatic GC would keep the cache under 10% of the disk: off while the cache is made.
echo '{"builder": {"gc": {"enabled": false}}}' > "$STRATA_CONFIG"

"$repo/testdata/mkbase.sh" "$work/base.tar"
S import "$work/base.tar" base:latest >/dev/null
mkdir -p "$work/ctx"
for i in $(seq "$builds"); do
    printf 'FROM base\nRUN head -c %s /dev/urandom > /blob-%s\n' "$per_build" "$i" \
        > "$work/ctx/Dockerfile"
    S build -q -t "bench:$i" "$work/ctx" >/dev/null
    S rmi "bench:$i" >/dev/null
done
S image prune -f >/dev/null
echo "cache: $builds records of $per_build bytes"
echo "store before: $(du -sb "$work/root" | cut -f1) bytes, $(ls "$work/root/pins" | wc -l) pins"
start=$(date +%s.%N)
S builder prune -a -f | tail -1
end=$(date +%s.%N)
echo "store after: $(du -sb "$work/root" | cut -f1) bytes, $(ls "$work/root/pins" | wc -l) pins"
echo "builder prune -a -f: $(echo "$end - $start" | bc) s"
S system check | tail -1
