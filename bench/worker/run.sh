#!/usr/bin/env bash
# Per-step cost of RUN and COPY: the strata worker alone against BuildKit (docker build, cold,
# --network=none) and `docker run --rm`, in one run on this machine. Prints a table and the
# ratios; raw numbers go to bench/worker/results/ (strata.jsonl, buildkit.tsv, table-*.md).
#
# The machine is shared, so the load changes while this runs. The strata worker's 40 steps
# take well under a second and BuildKit's builds tens of seconds: to compare like with like,
# each of the ROUNDS rounds measures the worker and then BuildKit, and the table gives the
# median over the rounds of each (the spread, min-max, beside it), with the load average.
#
# usage: bench/worker/run.sh [STEPS [ROUNDS]]   (defaults 40, 3; root, docker, busybox-static)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-40}
rounds=${2:-3}
out=bench/worker/results
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
load() { cut -d' ' -f1 /proc/loadavg; }

# The strata worker: STEPS sequential RUN true (each on all previous layers, with its layer
# diff), then STEPS sequential COPY of a 1 KiB file.
cargo bench -q -p strata-worker --bench steps --no-run 2>/dev/null
strata() { # appends one round's JSON lines to $work/strata.jsonl
    cargo bench -q -p strata-worker --bench steps -- "$steps" 2>/dev/null >>"$work/strata.jsonl"
}

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
# BuildKit's per-step cost: (T(STEPS) - T(1)) / (STEPS - 1), T(1) being the cost of a
# build and of its one step. T(1) is the median of the rounds' one-step builds, so that one
# slow one-step build (the load changes) cannot turn a round's figure negative.
: > "$work/strata.jsonl"
for f in run_n run_1 copy_n copy_1; do : > "$work/bk_$f"; done
loads="$(load)"
for _ in $(seq "$rounds"); do
    strata
    for kind in run copy; do
        build "$kind" "$steps" >> "$work/bk_${kind}_n"
        build "$kind" 1 >> "$work/bk_${kind}_1"
    done
    loads="$loads $(load)"
done
t0=$(now)
for _ in $(seq 10); do docker run --rm --network=none strata-bench-base:latest true; done
t1=$(now)
docker_run=$(echo "($t1 - $t0) * 100" | bc -l)
docker rmi -f strata-bench-base:latest >/dev/null
cp "$work/strata.jsonl" "$out/strata.jsonl"
# Wall seconds of each docker build: kind (run|copy, n = STEPS steps, 1 = one step), seconds.
for f in run_n run_1 copy_n copy_1; do sed "s/^/$f\t/" "$work/bk_$f"; done > "$out/buildkit.tsv"

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
per_step() { # $1 = kind: one per-step figure per round
    local base
    base=$(median < "$work/bk_${1}_1")
    while read -r t; do echo "($t - $base) * 1000 / ($steps - 1)" | bc -l; done < "$work/bk_${1}_n"
}
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f-%.1f", lo, hi }'; }
field() { grep "$1" "$work/strata.jsonl" | sed 's/.*"median_ms":\([0-9.]*\).*/\1/'; }
s_run=$(field 'RUN true' | median)
s_copy=$(field 'COPY' | median)
per_step run > "$work/bk_run"
per_step copy > "$work/bk_copy"
bk_run=$(median < "$work/bk_run")
bk_copy=$(median < "$work/bk_copy")
{
    printf '| per step (ms) | strata worker | BuildKit (docker build) | docker run --rm | BuildKit / strata |\n'
    printf '|---|---|---|---|---|\n'
    printf '| RUN true | %.2f (%s) | %.1f (%s) | %.1f | %.1fx |\n' "$s_run" "$(field 'RUN true' | spread)" \
        "$bk_run" "$(spread < "$work/bk_run")" "$docker_run" "$(echo "$bk_run / $s_run" | bc -l)"
    printf '| COPY 1 KiB | %.2f (%s) | %.1f (%s) | - | %.1fx |\n' "$s_copy" "$(field 'COPY' | spread)" \
        "$bk_copy" "$(spread < "$work/bk_copy")" "$(echo "$bk_copy / $s_copy" | bc -l)"
    printf '\n%s rounds, medians of the rounds (min-max of the rounds); 1-minute load average at the start and after each round: %s (%s CPUs)\n' \
        "$rounds" "$loads" "$(nproc)"
} | tee "$out/table-$(date -u +%Y%m%dT%H%M%SZ).md"
