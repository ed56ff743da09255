#!/bin/bash
# setup.sh BIN: fresh journaled ext4 at /var/tmp/ciedit/mnt, base imported, one cold build
set -e
cd /var/tmp/ciedit
umount mnt 2>/dev/null || true
rm -f fs.img; truncate -s 4G fs.img
mkfs.ext4 -q -O has_journal -E lazy_itable_init=0,lazy_journal_init=0 fs.img
mkdir -p mnt; mount -o loop fs.img mnt
export STRATA_ROOT=/var/tmp/ciedit/mnt/root
$1 import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["sh"]' /var/tmp/ciedit/rootfs.tar busybox:local >/dev/null
$1 build --progress plain --network none -t sbench-ci-edit:latest -f sc/ci-edit/Dockerfile sc/ci-edit/ctx >/dev/null 2>&1
echo setup done
