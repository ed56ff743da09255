#!/usr/bin/env bash
# The whole test suite, as CI runs it, on a fresh machine with nothing but Rust.
#
# 1. Installs what the tests need: Debian's packages (as root, only those missing) and
#    cargo-nextest.
# 2. Runs every test with nextest's `ci` profile. The tests that read the team's shared material
#    (`../shared` beside the repository: conformance corpora, the hostile-input generator) form
#    one group, every test named `shared_*`. Without `../shared` that group is not run, and this
#    says so; with STRATA_REQUIRE_SHARED=1 (set by .ci/run) a missing or empty group fails.
# 3. The rootless pass (docs/rootless.md): runs the end-to-end build, sandbox, network, store,
#    cache GC, git, fault, container and rootless tests again with every `strata` command run
#    as the user `strata-rootless` (STRATA_TEST_USER), made with subordinate ids before step 2
#    (idempotent).
#
# usage: scripts/test.sh [extra nextest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# The Debian packages the tests use: busybox-static for base images; skopeo and umoci to check
# what strata writes; zstd, xz, bzip2, gzip for archives; python3 for the shared generators;
# docker-registry (a registry on 127.0.0.1), apache2-utils (`htpasswd -B`) and openssl (a test
# CA) for pull, push and login; docker.io (dockerd and the docker client) for the interop test,
# which starts a dockerd of its own; iproute2 (`ip`: the bridges, made once, and the tests'
# checks of links) and iptables (NAT and filter rules; the veth pairs are made over netlink);
# openssh-client (ssh-agent, ssh-add, ssh-keygen) for `--ssh` and
# `RUN --mount=type=ssh`.
packages=(busybox-static skopeo umoci zstd xz-utils bzip2 gzip python3 docker-registry apache2-utils openssl iproute2 iptables openssh-client)
missing=()
# uidmap (newuidmap, newgidmap) maps the rootless pass's subordinate ids into strata's user
# namespace; slirp4netns is the rootless RUN network (docs/rootless.md).
packages+=(uidmap slirp4netns)
# git (with `git daemon` and `git http-backend`) for ADD of a git repository; openssh-server
# (`sshd` on 127.0.0.1, started by the test with a config of its own) for ADD of one over ssh.
packages+=(git openssh-server)
# procps: `strata top` runs the host's `ps`, as docker's does.
packages+=(procps)
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

# The rootless pass's user, with a range of 65536 subordinate uids and gids after every range
# already given out (made once, kept), and what slirp4netns needs: /dev/net/tun usable by
# users (udev makes it 0666; a machine without udev may leave it 0600).
# Made before the first pass too: a test of it runs strata as a user other than root, who
# needs subordinate ids to run it at all (store_faults::issue_12_another_user_*), and a fresh
# machine has no such user.
rootless_user=strata-rootless
make_rootless_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    id -u "$rootless_user" >/dev/null 2>&1 || useradd --create-home --shell /usr/sbin/nologin "$rootless_user"
    for f in subuid subgid; do
        touch "/etc/$f"
        if ! grep -q "^$rootless_user:" "/etc/$f"; then
            start=$(awk -F: 'BEGIN { m = 100000 } { if ($2 + $3 > m) m = $2 + $3 } END { print m }' "/etc/$f")
            usermod "--add-${f}s" "$start-$((start + 65535))" "$rootless_user"
        fi
    done
    [ "$(stat -c %a /dev/net/tun)" = 666 ] || chmod 0666 /dev/net/tun
}
make_rootless_user
rootless_pass() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "not run: the rootless pass (making its user needs root)"
        return 0
    fi
    # Left out: the cgroup tests (rootless strata makes no cgroup, docs/rootless.md); the
    # modules whose tests write as root what the user's strata must then read or write (ssh
    # keys of mode 0600, output directories made by the test), or assert owner 0 of files a
    # local output wrote (the user's own, rootless), and those of registries, dockerd and the
    # parser, which have nothing rootless; and the container network tests that need root's
    # bridge (container_net::bridge_*: veths, containers reaching each other); and the test
    # whose oracle walks the store's snapshots from the test process (root, outside strata's
    # user namespace, where the files' owners are the host's subordinate ids, not the image's).
    local filter='test(/^(build|sandbox|network|rootless|store|cache_gc|git_add|faults|containers|container_run|container_tools|container_health|container_tty|container_net)::/) - test(/^sandbox::issue_12_(fork_bomb_fails|the_cgroup_goes)/) - test(/^container_net::bridge_/) - test(=build::a_fresh_copys_layer_from_what_it_wrote_is_the_walks)'
    echo "rootless pass: the end-to-end tests again as $rootless_user"
    STRATA_TEST_USER=$rootless_user cargo nextest run -p strata-cli --test it --locked --profile ci \
        --run-ignored all -E "$filter" "$@"
}

# The shared group, in one place.
shared_filter='test(/(^|::)shared_/)'
if [ -d ../shared/conformance ]; then
    count=$(cargo nextest list --workspace --locked -E "$shared_filter" --message-format oneline 2>/dev/null | grep -c . || true)
    if [ "${STRATA_REQUIRE_SHARED:-0}" = 1 ] && [ "$count" -eq 0 ]; then
        echo "scripts/test.sh: the shared group has no test: it must run in CI" >&2
        exit 1
    fi
    echo "shared group: $count tests (../shared is present)"
    status=0
    cargo nextest run --workspace --locked --profile ci "$@" || status=$?
    rootless_pass "$@" || status=$?
    exit $status
fi
if [ "${STRATA_REQUIRE_SHARED:-0}" = 1 ]; then
    echo "scripts/test.sh: ../shared is missing, and CI must run the shared group" >&2
    exit 1
fi
status=0
cargo nextest run --workspace --locked --profile ci -E "not $shared_filter" "$@" || status=$?
rootless_pass "$@" || status=$?
count=$(cargo nextest list --workspace --locked -E "$shared_filter" --message-format oneline 2>/dev/null | grep -c . || true)
echo "not run: the shared group ($count tests named shared_*): ../shared is missing beside the repository"
exit $status
