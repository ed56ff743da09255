#!/bin/bash
# pair2.sh TAG N BEFORE AFTER
TAG=$1; N=$2
for i in $(seq 1 $N); do
  python3 cold.py $TAG-before-$i $3 1 edit 2>/dev/null | head -1
  python3 cold.py $TAG-after-$i $4 1 edit 2>/dev/null | head -1
done
