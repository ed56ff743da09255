#!/usr/bin/env bash
# Writes a small, deterministic rootfs tarball from Debian's busybox-static: /bin/busybox, its
# applets as symlinks, /etc/passwd and /etc/group (root, app 1000, nobody), /root, /tmp,
# /home/app. Tests and the README demo import it as their base image; nothing is pulled.
#
# usage: testdata/mkbase.sh OUT.tar [BUSYBOX]
set -euo pipefail
out=${1:?usage: mkbase.sh OUT.tar [BUSYBOX]}
busybox=${2:-}
if [ -z "$busybox" ]; then
    for b in /bin/busybox /usr/bin/busybox; do [ -x "$b" ] && busybox=$b && break; done
fi
if [ -z "$busybox" ]; then
    echo "mkbase.sh: no busybox found: install Debian's busybox-static (apt-get install busybox-static)" >&2
    exit 1
fi
if ! "$busybox" --list >/dev/null 2>&1 || ldd "$busybox" >/dev/null 2>&1; then
    echo "mkbase.sh: $busybox is not a static busybox: install busybox-static" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/home/app" "$tmp/root" "$tmp/tmp"
cp "$busybox" "$tmp/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$tmp/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$tmp/etc/passwd"
printf 'root:x:0:\nstaff:x:50:\napp:x:1000:\nnogroup:x:65534:\n' > "$tmp/etc/group"
chmod 0755 "$tmp" "$tmp/bin" "$tmp/bin/busybox" "$tmp/etc" "$tmp/home" "$tmp/home/app"
chmod 0644 "$tmp/etc/passwd" "$tmp/etc/group"
chmod 0700 "$tmp/root"
chmod 1777 "$tmp/tmp"
common=(--sort=name --numeric-owner --mtime=@946684800 --format=gnu -C "$tmp")
tar "${common[@]}" --owner=0 --group=0 -cf "$out" bin etc
tar "${common[@]}" --owner=0 --group=0 --no-recursion -rf "$out" home
tar "${common[@]}" --owner=1000 --group=1000 -rf "$out" home/app
tar "${common[@]}" --owner=0 --group=0 -rf "$out" root tmp
