#!/bin/sh
# Issue 11 §3, last point: a cache mount of 2000 x 4 KiB random files travels with a local
# cache. Runner A makes it and exports it (one full layer), B (fresh) edits one file and
# exports (a delta), C (fresh) restores the two-layer chain. Prints the build times, the
# mount's layers in the cache and the size of B's import record. Kept small: disk is tight.
#
# usage: STRATA=path/to/strata bench/cache/mounts.sh    (as root)
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
S=${STRATA:-$repo/target/debug/strata}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$repo/testdata/mkbase.sh" "$W/base.tar" >/dev/null
for r in a b c; do "$S" --root "$W/$r" import "$W/base.tar" base:latest >/dev/null; done
mkdir -p "$W/ctx"
cat > "$W/ctx/Dockerfile" <<'DF'
FROM base
COPY n /n
RUN --mount=type=cache,target=/cache sh -c 'if [ ! -d /cache/f ]; then mkdir /cache/f; i=0; while [ $i -lt 2000 ]; do head -c 4096 /dev/urandom > /cache/f/$i; i=$((i+1)); done; fi; echo $(cat /n) >> /cache/f/7'
DF
t() { /usr/bin/time -f "%e s" "$@" 2>&1 >/dev/null | tail -1; }
to="type=local,dest=$W/cache,cache-mounts=true"
from="type=local,src=$W/cache"
echo a > "$W/ctx/n"
echo "A: makes the mount, exports it:" "$(t "$S" --root "$W/a" build -q --cache-to "$to" "$W/ctx")"
echo b > "$W/ctx/n"
echo "B: restores, edits one file, exports:" "$(t "$S" --root "$W/b" build -q --cache-from "$from" --cache-to "$to" "$W/ctx")"
echo c > "$W/ctx/n"
echo "C: restores the chain:" "$(t "$S" --root "$W/c" build -q --cache-from "$from" "$W/ctx")"
python3 - "$W/cache" <<'PY'
import json, os, sys
d = sys.argv[1]
blob = lambda x: os.path.join(d, "blobs/sha256", x.split(":")[1])
index = json.load(open(os.path.join(d, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
for mount in config["mounts"].values():
    for layer in mount["layers"]:
        print(f"{mount['id']}: layer of {layer['size']} bytes ({layer.get('uncompressed_size')} uncompressed)")
PY
echo "B's import record: $(stat -c %s "$W"/b/worker/cache-mounts/*.imported.json) bytes"
