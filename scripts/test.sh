#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine with nothing but Rust.
#
# 1. Installs what the tests need: Debian's packages (as root, only those missing) and
#    cargo-nextest.
# 2. Runs every test with nextest's `ci` profile. The tests that read the team's shared material
#    (`../shared` beside the repository: conformance corpora, the hostile-input generator) form
#    one group, every test named `shared_*`. Without `../shared` that group is not run, and this
#    says so; with STRATA_REQUIRE_SHARED=1 (set by .ci/run) a missing or empty group fails.
#
# usage: scripts/test.sh [extra nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# The Debian packages the tests use: busybox-static for base images; skopeo and umoci to check
# what strata writes; zstd, xz, bzip2, gzip for archives; python3 for the shared generators;
# docker-registry (a registry on 127.0.0.1), apache2-utils (`htpasswd -B`) and openssl (a test
# CA) for pull, push and login; docker.io (dockerd and the docker client) for the interop test,
# which starts a dockerd of its own; iproute2 (`ip`) and iptables for the RUN network's bridge,
# veth pairs and NAT; openssh-client (ssh-agent, ssh-add, ssh-keygen) for `--ssh` and
# `RUN --mount=type=ssh`.
packages=(busybox-static skopeo umoci zstd xz-utils bzip2 gzip python3 docker-registry apache2-utils openssl iproute2 iptables openssh-client)
missing=()
# git (with `git daemon` and `git http-backend`) for ADD of a git repository; openssh-server
# (`sshd` on 127.0.0.1, started by the test with a config of its own) for ADD of one over ssh.
packages+=(git openssh-server)
for p in "${packages[@]}"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# By binary, not by package: a machine with docker-ce has dockerd without Debian's docker.io
# (which would conflict with it).
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    missing+=(docker.io)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/test.sh: the tests need root (namespaces, mounts) and these packages: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

# The shared group, in one place.
shared_filter='test(/(^|::)shared_/)'
if [ -d ../shared/conformance ]; then
    count=$(cargo nextest list --workspace --locked -E "$shared_filter" --message-format oneline 2>/dev/null | grep -c . || true)
    if [ "${STRATA_REQUIRE_SHARED:-0}" = 1 ] && [ "$count" -eq 0 ]; then
        echo "scripts/test.sh: the shared group has no test: it must run in CI" >&2
        exit 1
    fi
    echo "shared group: $count tests (../shared is present)"
    exec cargo nextest run --workspace --locked --profile ci "$@"
fi
if [ "${STRATA_REQUIRE_SHARED:-0}" = 1 ]; then
    echo "scripts/test.sh: ../shared is missing, and CI must run the shared group" >&2
    exit 1
fi
cargo nextest run --workspace --locked --profile ci -E "not $shared_filter" "$@"
count=$(cargo nextest list --workspace --locked -E "$shared_filter" --message-format oneline 2>/dev/null | grep -c . || true)
echo "not run: the shared group ($count tests named shared_*): ../shared is missing beside the repository"
