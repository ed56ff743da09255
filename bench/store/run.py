#!/usr/bin/env python3
"""Save/load throughput of a one-layer image: strata (gzip and zstd layers) beside
`docker save` / `docker load` and the `zstd -1` floor, on the same ~500 MB rootfs tar.

Usage (as root, docker running, strata built with --release):
    python3 bench/store/run.py [--size-mb 500] [-n 3] [--strata target/release/strata]

Prints a markdown table: median seconds over n runs and MB/s, where MB is the size of the
uncompressed rootfs tar (the same numerator for every tool). Page cache is warm for everyone
(the tar is read once before timing). docker objects are named strata-bench:* and removed.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, n, before=None):
    """Median (wall seconds, CPU seconds of the command and its children) over n runs.
    CPU time does not see work done inside dockerd."""
    walls, cpus = [], []
    for _ in range(n):
        if before:
            before()
        t, c = time.monotonic(), cpu()
        sh(cmd, stdout=subprocess.DEVNULL)
        walls.append(time.monotonic() - t)
        cpus.append(cpu() - c)
    return statistics.median(walls), statistics.median(cpus)


def dataset(work, size_mb):
    """A rootfs tar of real files (binaries, libraries) from this machine, ~size_mb."""
    out = os.path.join(work, "rootfs.tar")
    if os.path.exists(out):
        return out
    budget = size_mb * 1000 * 1000
    picked, total = [], 0
    for top in ["usr/lib/x86_64-linux-gnu", "usr/bin", "usr/share", "usr/lib"]:
        for dirpath, dirnames, filenames in os.walk("/" + top):
            dirnames.sort()
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                size = os.path.getsize(p)
                if total + size > budget:
                    continue
                picked.append(p[1:])
                total += size
            if total >= budget * 0.99:
                break
        if total >= budget * 0.99:
            break
    lst = os.path.join(work, "files.txt")
    with open(lst, "w") as fh:
        fh.write("\n".join(sorted(set(picked))) + "\n")
    sh(f"tar -C / --numeric-owner -cf {out} -T {lst}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--strata", default=os.path.join(REPO, "target/release/strata"))
    ap.add_argument("--work", default=os.path.join(REPO, "bench/work/store"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    tar = dataset(args.work, args.size_mb)
    mb = os.path.getsize(tar) / 1e6
    sh(f"cat {tar} > /dev/null")
    s, w, n = args.strata, args.work, args.n
    rows = []

    def row(what, times, extra=""):
        wall, cpu_s = times
        rows.append((what, wall, cpu_s, extra))
        print(f"{what}: {wall:.2f}s wall {cpu_s:.2f}s cpu {extra}", file=sys.stderr)

    for comp in ["gzip", "zstd"]:
        root = os.path.join(w, f"root-{comp}")
        fresh = os.path.join(w, f"fresh-{comp}")
        out = os.path.join(w, f"save-{comp}.tar")
        shutil.rmtree(root, ignore_errors=True)
        row(f"strata import ({comp})",
            timed(f"{s} --root {root} import --compression {comp} {tar} bench:{comp}", 1))
        row(f"strata save ({comp} layer)", timed(f"{s} --root {root} save -o {out} bench:{comp}", n),
            f"archive {os.path.getsize(out) / 1e6:.0f} MB")
        other = "zstd" if comp == "gzip" else "gzip"
        conv = os.path.join(w, f"save-{comp}-to-{other}.tar")
        row(f"strata save --compression {other} ({comp} layer, recompressed)",
            timed(f"{s} --root {root} save --compression {other} -o {conv} bench:{comp}", 1),
            f"archive {os.path.getsize(conv) / 1e6:.0f} MB")
        os.remove(conv)
        row(f"strata load ({comp} layer)",
            timed(f"{s} --root {fresh} load -i {out}", n,
                  before=lambda: shutil.rmtree(fresh, ignore_errors=True)))
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(fresh, ignore_errors=True)

    if shutil.which("docker"):
        dout = os.path.join(w, "docker.tar")
        sh("docker rmi -f strata-bench:1 >/dev/null 2>&1 || true")
        row("docker import", timed(f"docker import {tar} strata-bench:1", 1))
        row("docker save", timed(f"docker save -o {dout} strata-bench:1", n),
            f"archive {os.path.getsize(dout) / 1e6:.0f} MB")
        row("docker load",
            timed(f"docker load -i {dout}", n,
                  before=lambda: sh("docker rmi -f strata-bench:1 >/dev/null")))
        sh("docker rmi -f strata-bench:1 >/dev/null 2>&1 || true")
        os.remove(dout)

    zst = os.path.join(w, "rootfs.tar.zst")
    row("floor: zstd -1 (compress the tar)", timed(f"zstd -q -1 -f {tar} -o {zst}", n))
    row("floor: zstd -d (decompress)", timed(f"zstd -q -d -c {zst} > /dev/null", n))
    row("floor: sha256sum of the tar", timed(f"sha256sum {tar}", n))
    row("floor: cp of the tar", timed(f"cp {tar} {w}/copy.tar && sync {w}/copy.tar", n))
    os.remove(zst)
    os.remove(f"{w}/copy.tar")

    print(f"| operation ({mb:.0f} MB rootfs tar, median of {n}) | wall s | MB/s wall | "
          "CPU s | MB/s per CPU s | note |")
    print("|---|---:|---:|---:|---:|---|")
    for what, wall, cpu_s, extra in rows:
        per_cpu = f"{mb / cpu_s:.0f}" if cpu_s > 0.05 else "n/a (in dockerd)"
        print(f"| {what} | {wall:.2f} | {mb / wall:.0f} | {cpu_s:.2f} | {per_cpu} | {extra} |")


if __name__ == "__main__":
    main()
