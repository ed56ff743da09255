#!/usr/bin/env bash
# Per-step cost of RUN and COPY: the strata worker alone against BuildKit (docker build, cold,
# --network=none) and `docker run --rm`, in one run on this machine. Prints a table and the
# ratios; raw numbers go to bench/worker/results/.
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
per_step() { # $1 = kind: (T(steps) - T(1)) / (steps - 1), one sample
    local a b
    a=$(build "$1" "$steps"); b=$(build "$1" 1)
    echo "($a - $b) * 1000 / ($steps - 1)" | bc -l
}

: > "$work/strata.jsonl"
: > "$work/bk_run"
: > "$work/bk_copy"
loads="$(load)"
for _ in $(seq "$rounds"); do
    strata
    per_step run >> "$work/bk_run"
    per_step copy >> "$work/bk_copy"
    loads="$loads $(load)"
done
t0=$(now)
for _ in $(seq 10); do docker run --rm --network=none strata-bench-base:latest true; done
t1=$(now)
docker_run=$(echo "($t1 - $t0) * 100" | bc -l)
docker rmi -f strata-bench-base:latest >/dev/null
cp "$work/strata.jsonl" "$out/strata.jsonl"

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f-%.1f", lo, hi }'; }
field() { grep "$1" "$work/strata.jsonl" | sed 's/.*"median_ms":\([0-9.]*\).*/\1/'; }
s_run=$(field 'RUN true' | median)
s_copy=$(field 'COPY' | median)
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
