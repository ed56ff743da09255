#!/usr/bin/env bash
# Per-step cost of RUN and COPY: the strata worker alone against BuildKit (docker build, cold,
# --network=none) and `docker run --rm`, in one run on this machine. Prints a table and the
# ratios; raw numbers go to bench/worker/results/.
#
# usage: bench/worker/run.sh [STEPS]   (default 40; needs root, docker, busybox-static)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-40}
out=bench/worker/results
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }

# strata worker: 40 sequential RUN true (each on all previous layers, with its layer diff),
# then 40 sequential COPY of a 1 KiB file.
cargo bench -q -p strata-worker --bench steps -- "$steps" 2>/dev/null | tee "$out/strata.jsonl"

# The same busybox base as an image for docker.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true cat ls echo; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
docker import "$work/rootfs.tar" strata-bench-base:latest >/dev/null

mkdir -p "$work/ctx"
for i in $(seq 0 $((steps - 1))); do head -c 1024 /dev/zero | tr '\0' x > "$work/ctx/f$i"; done
df() { # $1 = kind (run|copy), $2 = count
    echo "FROM strata-bench-base:latest"
    for i in $(seq 0 $(($2 - 1))); do
        if [ "$1" = run ]; then echo "RUN true # $i $RANDOM$RANDOM"; else echo "COPY f$i /app/f$i"; fi
    done
}
build() { # $1 = kind, $2 = count; prints wall seconds of a cold build
    df "$1" "$2" > "$work/Dockerfile"
    local t0 t1
    t0=$(now)
    DOCKER_BUILDKIT=1 docker build -q --no-cache --network=none -f "$work/Dockerfile" "$work/ctx" >/dev/null
    t1=$(now)
    echo "$t1 - $t0" | bc -l
}
per_step() { # $1 = kind: (T(steps) - T(1)) / (steps - 1), median of 3
    local samples=()
    for _ in 1 2 3; do
        local a b
        a=$(build "$1" "$steps"); b=$(build "$1" 1)
        samples+=("$(echo "($a - $b) * 1000 / ($steps - 1)" | bc -l)")
    done
    printf '%s\n' "${samples[@]}" | sort -g | sed -n 2p
}
bk_run=$(per_step run)
bk_copy=$(per_step copy)
t0=$(now)
for _ in $(seq 10); do docker run --rm --network=none strata-bench-base:latest true; done
t1=$(now)
docker_run=$(echo "($t1 - $t0) * 100" | bc -l)
docker rmi -f strata-bench-base:latest >/dev/null

s_run=$(grep 'RUN true' "$out/strata.jsonl" | sed 's/.*"median_ms":\([0-9.]*\).*/\1/')
s_copy=$(grep 'COPY' "$out/strata.jsonl" | sed 's/.*"median_ms":\([0-9.]*\).*/\1/')
{
    printf '| per step (ms) | strata worker | BuildKit (docker build) | docker run --rm | BuildKit / strata |\n'
    printf '|---|---|---|---|---|\n'
    printf '| RUN true | %.2f | %.1f | %.1f | %.1fx |\n' "$s_run" "$bk_run" "$docker_run" "$(echo "$bk_run / $s_run" | bc -l)"
    printf '| COPY 1 KiB | %.2f | %.1f | - | %.1fx |\n' "$s_copy" "$bk_copy" "$(echo "$bk_copy / $s_copy" | bc -l)"
} | tee "$out/table-$(date -u +%Y%m%dT%H%M%SZ).md"
