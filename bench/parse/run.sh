#!/usr/bin/env bash
# Frontend figures for issue 2 §7: strata's parse, parse + typed instructions + expansion, and
# full lowering of a generated 10,000-instruction Dockerfile (each phase in a fresh process,
# with the peak memory it adds), next to BuildKit's (through docker) on the same file in the
# same run.
#
# BuildKit's parser cannot be called alone, so its figure is a difference of two `docker
# build`s that both stop at an unknown instruction on their last line: the generated file and
# a two-line one. What remains is BuildKit reading, parsing and checking 10,000 instructions
# (plus sending 0.8 MB to the daemon): an upper bound on its parse time, not a precise one.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release -q -p strata-bench-parse
target/release/bench-parse 10000 --write "$work/big.Dockerfile"

command -v docker >/dev/null || { echo "docker not found: BuildKit figure skipped"; exit 0; }
sed -i '/^# syntax=/d' "$work/big.Dockerfile"   # no frontend image to pull
printf 'FROOM x\n' >>"$work/big.Dockerfile"
printf 'FROM scratch\nFROOM x\n' >"$work/small.Dockerfile"
mkdir "$work/ctx"
build() { # prints the wall seconds of one failing build
    local s e
    s=$(date +%s.%N)
    DOCKER_BUILDKIT=1 docker build -q -f "$1" "$work/ctx" >/dev/null 2>&1 || true
    e=$(date +%s.%N)
    echo "$e - $s" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
big=$(for _ in $(seq "$runs"); do build "$work/big.Dockerfile"; done | median)
small=$(for _ in $(seq "$runs"); do build "$work/small.Dockerfile"; done | median)
echo "buildkit (docker build, median of $runs): 10,000 instructions ${big} s, 2 instructions ${small} s"
echo "buildkit parse + checks of 10,000 instructions: about $(echo "($big - $small) * 1000" | bc) ms"
