#!/bin/bash
f=/var/tmp/ciedit/sc/ci-edit/ctx/src/mod00/file000.src
cp /var/tmp/ciedit/orig.src $f; echo "// edit $(date +%s%N)" >> $f
