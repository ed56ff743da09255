#!/usr/bin/env bash
# The README demo, offline on a fresh machine (as root: RUN steps use namespaces and overlayfs):
# make a busybox base image from Debian's busybox-static, build the two-stage demo in this
# directory (both stages at once, a COPY --from each), and run the result.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# Debian packages: busybox-static for the base image; iproute2 and iptables for the RUN
# network (each RUN gets a namespace of its own, NAT through the strata0 bridge).
missing=()
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing+=(busybox-static)
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build -q --release -p strata-cli
strata=$repo/target/release/strata
export STRATA_ROOT=${STRATA_ROOT:-$repo/target/demo-root}
testdata/mkbase.sh target/demo-base.tar
"$strata" import target/demo-base.tar demo-base:latest >/dev/null
"$strata" build -t demo:latest testdata/demo
# The demo needs no network: --network none spares a fresh machine the bridge (ip, iptables).
"$strata" run --rm --network none demo:latest
