#!/bin/bash
# synct.sh N BIN... : sum of syncfs+fsync time per edit build (strace -T), interleaved
cd /var/tmp/edit; n=$1; shift
for i in $(seq 1 $n); do for b in "$@"; do ./edit.sh
STRATA_ROOT=/var/tmp/edit/mnt/root strace -f --seccomp-bpf -e trace=fsync,syncfs,fdatasync -T -o /tmp/synct.txt $b build --progress plain --network none -t sbench-ci-edit:latest -f sc/ci-edit/Dockerfile sc/ci-edit/ctx >/dev/null 2>&1
echo "$(basename $b) $(grep -E 'sync' /tmp/synct.txt | grep -o '<[0-9.]*>' | tr -d '<>' | awk '{s+=$1} END {printf "%.2f", s*1000}') $(grep -cE '(fsync|syncfs)\(' /tmp/synct.txt)"
done; done
