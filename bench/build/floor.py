#!/usr/bin/env python3
"""The floor of bigcontext's one-file edit on this machine (issue 15 §2): what any engine
pays for the work the edit needs, timed alone, each part N times on a fresh journaled ext4
loop filesystem (`freshfs.fresh`, as `run.py --fs ext4`), medians in ms: wall, and CPU (user
and system, of this script and the commands it waits for), which the load of other work on
the machine stretches less than the wall.

    python3 bench/build/floor.py [-n 5] [--ctx bench/build/work/scenarios/bigcontext/ctx]

Parts (the context is the one `run.py` generates; run `run.py --scenarios bigcontext` once
first):
- scan: a stat of every context file (`du -s`, one `fstatat` each), what tells an edit;
- run: the scenario's RUN, `find /app -type f | wc -l`, on the tree (no overlay, no sandbox);
- sha256: SHA-256 of the layer tar (OpenSSL's, SHA-NI) read from the page cache;
- write: the tar written into a new file (page cache), then its fsync, timed apart;
- clone: `cp -al` of the tree (a directory made per directory, a hard link per file);
and two ways to copy the earlier tar into a new blob while hashing it, for issue 15's
question whether `copy_file_range` beats reads and writes:
- copy_rw: 1 MiB `read`s into one buffer, each hashed and `write`n (what the layer writer
  does, less its copy into the hashing thread's chunk);
- copy_cfr: `copy_file_range` of 1 MiB at a time, and a `pread` of the same MiB to hash it.
Root (mount).
"""
import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import freshfs  # noqa: E402


def cpu():
    """CPU seconds of this process and of its waited-for children, user and system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


CPU = {}


def timed(f, part=None):
    """Wall ms of `f()`; its CPU ms go to CPU[part]."""
    c, t = cpu(), time.perf_counter()
    f()
    wall = (time.perf_counter() - t) * 1000
    if part:
        CPU.setdefault(part, []).append((cpu() - c) * 1000)
    return wall


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--ctx", default=os.path.join(HERE, "work/scenarios/bigcontext/ctx"))
    ap.add_argument("--fs-dir", default="/var/tmp/strata-floor")
    a = ap.parse_args()
    if not os.path.isdir(a.ctx):
        raise SystemExit("%s missing: run run.py --scenarios bigcontext once" % a.ctx)
    parts = {k: [] for k in ("scan", "run", "sha256", "write", "fsync", "clone", "copy_rw",
                              "copy_cfr")}
    with freshfs.fresh("ext4", a.fs_dir, "floor-%d" % os.getpid(), size="4G") as mnt:
        snap = os.path.join(mnt, "app")
        sh("cp -a %s %s" % (a.ctx, snap))
        tar = os.path.join(mnt, "layer.tar")
        with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as t:
            t.add(snap, arcname="app")
        size = os.path.getsize(tar)
        with open(tar, "rb") as f:
            body = f.read()
        sync = os.sync
        sync()
        for i in range(a.n):
            load = os.getloadavg()[0]
            parts["scan"].append(timed(part="scan", f=lambda: sh("du -s %s" % a.ctx)))
            parts["run"].append(timed(part="run", f=lambda: sh("find %s -type f | wc -l" % snap)))

            def sha():
                h = hashlib.sha256()
                with open(tar, "rb", buffering=0) as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            parts["sha256"].append(timed(part="sha256", f=sha))
            blob = os.path.join(mnt, "blob-%d" % i)
            with open(blob, "wb", buffering=0) as f:
                view = memoryview(body)
                parts["write"].append(timed(part="write", f=
                    lambda: [f.write(view[o:o + (1 << 20)]) for o in range(0, len(view), 1 << 20)]))
                parts["fsync"].append(timed(part="fsync", f=lambda: os.fsync(f.fileno())))
            clone = os.path.join(mnt, "clone-%d" % i)
            parts["clone"].append(timed(part="clone", f=lambda: sh("cp -al %s %s" % (snap, clone))))
            copy = os.path.join(mnt, "copy-%d" % i)

            def copy_rw():
                h, buf = hashlib.sha256(), bytearray(1 << 20)
                with open(tar, "rb", buffering=0) as src, open(copy, "wb", buffering=0) as dst:
                    while n := src.readinto(buf):
                        h.update(memoryview(buf)[:n])
                        dst.write(memoryview(buf)[:n])

            def copy_cfr():
                h, buf = hashlib.sha256(), bytearray(1 << 20)
                with open(tar, "rb", buffering=0) as src, open(copy, "wb", buffering=0) as dst:
                    at = 0
                    while n := os.copy_file_range(src.fileno(), dst.fileno(), 1 << 20, at):
                        got = os.preadv(src.fileno(), [memoryview(buf)[:n]], at)
                        h.update(memoryview(buf)[:got])
                        at += n
            parts["copy_rw"].append(timed(part="copy_rw", f=copy_rw))
            os.unlink(copy)
            parts["copy_cfr"].append(timed(part="copy_cfr", f=copy_cfr))
            sh("rm -rf %s %s %s" % (clone, blob, copy))
            sync()
            print("rep %d (load %.2f): %s" % (i + 1, load, ", ".join(
                "%s %.0f" % (k, v[-1]) for k, v in parts.items())), file=sys.stderr)
    print("tar %d bytes, %d files; N=%d, medians [min-max] ms, 1-minute load %.2f at the end"
          % (size, sum(len(f) for _, _, f in os.walk(a.ctx)), a.n, os.getloadavg()[0]))
    print("| part | wall ms median [min–max] | CPU ms median [min–max] |\n|---|---|---|")
    for k, v in parts.items():
        c = CPU[k]
        print("| %s | %.0f [%.0f–%.0f] | %.0f [%.0f–%.0f] |" % (
            k, statistics.median(v), min(v), max(v), statistics.median(c), min(c), max(c)))


if __name__ == "__main__":
    main()
