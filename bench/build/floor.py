#!/usr/bin/env python3
"""The floor of each unmet row of issue 15 on this machine: the work the Dockerfile asks for,
plus what any engine must do for it under the store's rule (a tagged image never loses data:
one durable copy of each layer's bytes, a blob or a synced snapshot, before the tag; the
layer's diff ID hashed), each part timed alone, N times, on a fresh journaled ext4 loop
filesystem per row and repetition (`freshfs.fresh`, as `run.py --fs ext4` makes them).
Repetitions are interleaved (rep 1 of every row, then rep 2, ...). Medians in ms: wall, and
CPU (user and system of this script's threads and of the commands it waits for; the kernel's
writeback threads are not counted), which the load of other work stretches less than wall.

    python3 bench/build/floor.py [-n 5] [--row all|biglayer-cold,bigcontext-cold,...]
        [--tools target/release/strata]     # both tools' builds in every repetition too
        [--against results/run-<id>.json]   # or BuildKit's and strata's from an earlier run
    python3 bench/build/floor.py --table-only results/floor-<a>.json results/floor-<b>.json

With `--tools`, each repetition also builds the rows' scenarios (cold, then the one-file
edit) with BuildKit and with strata, each on a fresh filesystem of its own (`fsmode.py`'s
blocks, as `run.py --fs ext4`), so that the floors are set against both tools measured on
the same machine at the same time: the tables give each design's floor as a ratio to that
BuildKit median, beside strata's median phases. The floors use each part's least wall (the
sample the machine's other work disturbed least) as well as its medians.

Rows and their parts (the scenarios are the shared harness's, generated into
bench/build/work/scenarios; the RUN runs in a plain `chroot` of the harness's busybox rootfs
on the fresh filesystem, no overlay, no namespaces, unless a part says so; tree work is done
by `floorfs.c`, compiled here, which makes only the syscalls the work needs):

- biglayer-cold: `run` (the RUN, `head -c 500M /dev/urandom`), `hash_sync` (SHA-256 of its
  file beside the file's fsync, two threads: the snapshot made durable instead of a blob),
  `sha256` (alone), `blob_write`/`blob_fsync` (500 MB written into a new file, then its
  fsync), `blob_ew_write`/`blob_ew_fsync` (the same with writeback started every 32 MiB, as
  the store's `EarlyWriteback`), `run_wb` (the RUN while a thread `syncfs`es every 250 ms)
  and `hash_tail` (SHA-256 beside the fsync of what `run_wb` left).
- bigcontext-cold: `scan` (one `fstatat` per context entry), `ctx_hash` (SHA-256 of each
  context file on two threads), `copy` (the context into the rootfs's /app on two threads:
  open, create, `sendfile`, `futimens`), `run` (`find /app -type f | wc -l`), `snap_sync`
  (`syncfs` of the copied tree), `walk` (one `fstatat` per entry of the copy: a diff's
  least), `tar_hash` (a sorted walk streaming headers and bytes into one SHA-256: the diff
  ID), `tar_blob` (the same writing the blob, its writeback started every 32 MiB) and
  `blob_fsync`.
- bigcontext-edit: `scan`, `clone` (a directory per directory and a hard link per file of the
  earlier snapshot, then the edited file replaced), `run`, `snap_sync` (`syncfs` of the
  clone), `edit_upper` and `run_overlay` (no clone: the edited file written alone into an
  overlay's upper dir over the earlier snapshot, and the RUN on that overlay), `sha256` (of
  the 215 MB layer tar), `copy_rw` (the earlier tar read, hashed and written into a new
  blob, writeback every 32 MiB: the incremental tar's bytes) with
  `copy_fsync`, `copy_cfr` (`copy_file_range` plus a `pread` to hash), `write`/`fsync` (the
  tar from memory into a new file, then its fsync) and `ranges_fsync` (a 16 KiB file, the size
  of a blob made of the earlier blob's ranges plus the edited entry, written and fsynced).
- ci-edit-edit: `scan`, `copy_full` (all 500 files of `src/`, as BuildKit's COPY does),
  `clone` (of the earlier `src/` snapshot, the edited file replaced), `run` (the build RUN),
  `run_ns` (the same in new mount, PID, network, UTS and IPC namespaces: `unshare -fmpnui
  chroot`), `snap_sync`, `layers` (the COPY's and the RUN's layers tarred and hashed), `blobs`
  (both written and fsynced, and their directory) and `index` (a small file written,
  fsynced, renamed, its directory fsynced: the tag's commit).

Each part starts after `sync` (nothing dirty left by the others) except where the build would
run it on the previous part's dirty data: the RUN after the COPY, and the syncs and fsyncs.
One warm-up repetition of every row runs first and is dropped (`--warmup`): on a VM that
booted recently, memory touched for the first time costs several times more.

Root (mount, chroot; dockerd with `--tools`). JSON of every sample, the tools' included:
`results/floor-<UTC>[-tag].json`.
"""
import argparse
import contextlib
import ctypes
import datetime
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import freshfs  # noqa: E402
import fsmode  # noqa: E402

MIB = 1 << 20
WRITEBACK_EVERY = 32 * MIB  # store/src/durable.rs EarlyWriteback
LIBC = ctypes.CDLL(None, use_errno=True)
ROWS = ("biglayer-cold", "bigcontext-cold", "bigcontext-edit", "ci-edit-edit")
# The row's scenario and measure in run.py's JSON.
ROW_KEY = {r: tuple(r.rsplit("-", 1)) for r in ROWS}


def cpu():
    """CPU seconds of this process's threads and of its waited-for children, user and system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def sh(cmd, **kw):
    subprocess.run(cmd, shell=isinstance(cmd, str), check=True, stdout=subprocess.DEVNULL, **kw)


def syncfs(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if LIBC.syncfs(fd):
            raise OSError(ctypes.get_errno(), "syncfs %s" % path)
    finally:
        os.close(fd)


def fsync_path(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


class Sink:
    """A new file written 1 MiB at a time; with `early`, writeback of each 32 MiB just
    written is started (`posix_fadvise(DONTNEED)`, what `EarlyWriteback` does)."""

    def __init__(self, path, early):
        self.f, self.early, self.at, self.started = open(path, "wb", buffering=0), early, 0, 0

    def write(self, b):
        self.f.write(b)
        self.at += len(b)
        if self.early and self.at - self.started >= WRITEBACK_EVERY:
            os.posix_fadvise(self.f.fileno(), self.started, self.at - self.started,
                             os.POSIX_FADV_DONTNEED)
            self.started = self.at

    def fsync(self):
        os.fsync(self.f.fileno())

    def close(self):
        self.f.close()


def write_body(path, body, early):
    s = Sink(path, early)
    view = memoryview(body)
    for o in range(0, len(view), MIB):
        s.write(view[o:o + MIB])
    return s


def both(f, g):
    """Runs f and g on two threads (hashlib and fsync release the GIL); returns when both end."""
    t = threading.Thread(target=g)
    t.start()
    f()
    t.join()


class Rep:
    """One repetition of one row: its fresh filesystem and its parts' samples."""

    def __init__(self, out, row, rep, mnt):
        self.out, self.row, self.rep, self.mnt = out, row, rep, mnt
        self.load = os.getloadavg()[0]

    def part(self, name, f, clean=True):
        """Times `f()` (wall and CPU ms); with `clean`, after all dirty data is written back
        (without, the part runs on what the previous parts left dirty, as in a build)."""
        if clean:
            os.sync()
        c, t = cpu(), time.perf_counter()
        r = f()
        wall = (time.perf_counter() - t) * 1000
        self.out.append({"row": self.row, "rep": self.rep, "part": name, "wall_ms": wall,
                         "cpu_ms": (cpu() - c) * 1000, "load1": os.getloadavg()[0]})
        return r

    def timed_only(self, name, wall, cpu_ms):
        self.out.append({"row": self.row, "rep": self.rep, "part": name, "wall_ms": wall,
                         "cpu_ms": cpu_ms, "load1": os.getloadavg()[0]})


def rootfs(mnt, tar):
    """The harness's busybox rootfs on the fresh filesystem, with /dev/null and /dev/urandom."""
    r = os.path.join(mnt, "r")
    os.makedirs(r)
    sh(["tar", "-C", r, "-xf", tar])
    for name, minor in (("null", 3), ("urandom", 9)):
        os.mknod(os.path.join(r, "dev", name), 0o666 | 0o020000, os.makedev(1, minor))
    return r


def chroot(r, script, ns=False):
    pre = ["unshare", "--fork", "--pid", "--mount", "--net", "--uts", "--ipc"] if ns else []
    sh(pre + ["chroot", r, "/bin/sh", "-c", script],
       env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})


# --------------------------------------------------------------------------- rows

BIGLAYER_RUN = "head -c 524288000 /dev/urandom > /big.bin && ls -l /big.bin"


def row_biglayer_cold(p, env):
    r = rootfs(p.mnt, env["rootfs"])
    big = os.path.join(r, "big.bin")
    p.part("run", lambda: chroot(r, BIGLAYER_RUN))
    # The snapshot made durable instead of a blob: its hash beside its fsync. Timed without
    # the os.sync() of `part`, which would write it back first.
    c, t = cpu(), time.perf_counter()
    both(lambda: sha256_file(big), lambda: fsync_path(big))
    p.timed_only("hash_sync", (time.perf_counter() - t) * 1000, (cpu() - c) * 1000)
    p.part("sha256", lambda: sha256_file(big))
    body = env["body500"]
    for tag, early in (("blob", False), ("blob_ew", True)):
        path = os.path.join(p.mnt, tag)
        s = p.part(tag + "_write", lambda: write_body(path, body, early))
        c, t = cpu(), time.perf_counter()
        s.fsync()
        p.timed_only(tag + "_fsync", (time.perf_counter() - t) * 1000, (cpu() - c) * 1000)
        s.close()
        os.unlink(path)
    os.unlink(big)
    # The RUN with writeback started beside it (a syncfs every 250 ms), then what is left.
    stop = threading.Event()

    def flusher():
        while not stop.wait(0.25):
            syncfs(p.mnt)

    def run_wb():
        t = threading.Thread(target=flusher)
        t.start()
        try:
            chroot(r, BIGLAYER_RUN)
        finally:
            stop.set()
            t.join()
    p.part("run_wb", run_wb)
    c, t = cpu(), time.perf_counter()
    both(lambda: sha256_file(big), lambda: fsync_path(big))
    p.timed_only("hash_tail", (time.perf_counter() - t) * 1000, (cpu() - c) * 1000)


def floorfs(env, *args):
    """Runs the compiled floorfs.c (its least-work copy, hash, walk, clone, tar); its stdout."""
    return subprocess.run([env["floorfs"]] + [str(x) for x in args], check=True,
                          stdout=subprocess.PIPE).stdout.decode()


def row_bigcontext_cold(p, env):
    ctx = env["ctx"]["bigcontext"]
    r = rootfs(p.mnt, env["rootfs"])
    app = os.path.join(r, "app")
    p.part("scan", lambda: floorfs(env, "walk", ctx))
    p.part("ctx_hash", lambda: floorfs(env, "hash", ctx, 2))
    p.part("copy", lambda: floorfs(env, "copy", ctx, app, 2))
    p.part("run", lambda: chroot(r, "find /app -type f | wc -l > /count && cat /count"),
           clean=False)
    c, t = cpu(), time.perf_counter()
    syncfs(p.mnt)  # not after os.sync(): the tree is what is written back
    p.timed_only("snap_sync", (time.perf_counter() - t) * 1000, (cpu() - c) * 1000)
    p.part("walk", lambda: floorfs(env, "walk", app))
    p.part("tar_hash", lambda: floorfs(env, "tarhash", app))
    blob = os.path.join(p.mnt, "blob")
    p.part("tar_blob", lambda: floorfs(env, "tarhash", app, blob))
    c, t = cpu(), time.perf_counter()
    fsync_path(blob)
    p.timed_only("blob_fsync", (time.perf_counter() - t) * 1000, (cpu() - c) * 1000)


def replace_file(path, body):
    """What an incremental COPY does to an edited file: unlink the entry, write a new one."""
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(body)


def row_bigcontext_edit(p, env):
    ctx = env["ctx"]["bigcontext"]
    r = rootfs(p.mnt, env["rootfs"])
    snap, clone = os.path.join(r, "app"), os.path.join(r, "app2")
    floorfs(env, "copy", ctx, snap, 2)  # the earlier snapshot, untimed
    tar = os.path.join(p.mnt, "layer.tar")
    with open(tar, "wb") as f:
        f.write(env["bigtar"])
    edit, body = env["edits"]["bigcontext"], env["edited"]["bigcontext"]
    p.part("scan", lambda: floorfs(env, "walk", ctx))

    def do_clone():
        floorfs(env, "clone", snap, clone)
        replace_file(os.path.join(clone, edit), body)
    p.part("clone", do_clone)
    p.part("run", lambda: chroot(r, "find /app2 -type f | wc -l > /count && cat /count"),
           clean=False)
    c, t = cpu(), time.perf_counter()
    syncfs(p.mnt)
    p.timed_only("snap_sync", (time.perf_counter() - t) * 1000, (cpu() - c) * 1000)
    # No clone: the edited file alone in an overlay's upper dir over the earlier snapshot,
    # and the RUN on that overlay.
    up, wk, ov = (os.path.join(p.mnt, d) for d in ("up", "wk", "r/app3"))

    def edit_upper():
        os.makedirs(os.path.join(up, os.path.dirname(edit)))
        with open(os.path.join(up, edit), "wb") as f:
            f.write(body)
    p.part("edit_upper", edit_upper)
    os.makedirs(wk)
    os.makedirs(ov)
    sh(["mount", "-t", "overlay", "overlay", "-o",
        "lowerdir=%s,upperdir=%s,workdir=%s" % (snap, up, wk), ov])
    try:
        p.part("run_overlay", lambda: chroot(r, "find /app3 -type f | wc -l > /count && cat /count"),
               clean=False)
    finally:
        sh(["umount", ov])
    p.part("sha256", lambda: sha256_file(tar))
    copy = os.path.join(p.mnt, "copy")

    def copy_rw():
        h, buf = hashlib.sha256(), bytearray(MIB)
        s = Sink(copy, True)
        with open(tar, "rb", buffering=0) as src:
            while n := src.readinto(buf):
                h.update(memoryview(buf)[:n])
                s.write(memoryview(buf)[:n])
        return s
    s = p.part("copy_rw", copy_rw)
    c, t = cpu(), time.perf_counter()
    s.fsync()
    p.timed_only("copy_fsync", (time.perf_counter() - t) * 1000, (cpu() - c) * 1000)
    s.close()
    os.unlink(copy)

    def copy_cfr():
        h, buf = hashlib.sha256(), bytearray(MIB)
        with open(tar, "rb", buffering=0) as src, open(copy, "wb", buffering=0) as dst:
            at = 0
            while n := os.copy_file_range(src.fileno(), dst.fileno(), MIB, at):
                got = os.preadv(src.fileno(), [memoryview(buf)[:n]], at)
                h.update(memoryview(buf)[:got])
                at += n
    p.part("copy_cfr", copy_cfr)
    os.unlink(copy)
    blob = os.path.join(p.mnt, "blob")
    s = p.part("write", lambda: write_body(blob, env["bigtar"], False))
    c, t = cpu(), time.perf_counter()
    s.fsync()
    p.timed_only("fsync", (time.perf_counter() - t) * 1000, (cpu() - c) * 1000)
    s.close()

    def ranges():
        s = write_body(os.path.join(p.mnt, "ranges"), os.urandom(16 << 10), False)
        s.fsync()
        s.close()
    p.part("ranges_fsync", ranges)


CI_RUN = ("cd /app && mkdir -p /app/build && find src -type f | sort | xargs cat > "
          "/app/build/bundle.txt && sha256sum /app/build/bundle.txt && find src -type f | wc -l")


def row_ci_edit_edit(p, env):
    ctx = env["ctx"]["ci-edit"]
    r = rootfs(p.mnt, env["rootfs"])
    app = os.path.join(r, "app")
    os.makedirs(app)
    earlier = os.path.join(p.mnt, "earlier-src")
    floorfs(env, "copy", os.path.join(ctx, "src"), earlier, 1)  # the earlier COPY's snapshot
    shutil.copy2(os.path.join(ctx, "deps.lock"), app)
    edit = os.path.relpath(env["edits"]["ci-edit"], "src")
    body = env["edited"]["ci-edit"]
    p.part("scan", lambda: floorfs(env, "walk", ctx))
    p.part("copy_full", lambda: floorfs(env, "copy", os.path.join(ctx, "src"),
                                        os.path.join(p.mnt, "full-src"), 2))

    def do_clone():
        dst = os.path.join(app, "src")
        floorfs(env, "clone", earlier, dst)
        replace_file(os.path.join(dst, edit), body)
    p.part("clone", do_clone)
    p.part("run", lambda: chroot(r, CI_RUN), clean=False)
    p.part("run_ns", lambda: chroot(r, CI_RUN, ns=True), clean=False)
    c, t = cpu(), time.perf_counter()
    syncfs(p.mnt)
    p.timed_only("snap_sync", (time.perf_counter() - t) * 1000, (cpu() - c) * 1000)
    sizes = []

    def layers():
        for d in ("src", "build"):
            sizes.append(int(floorfs(env, "tarhash", os.path.join(app, d)).split()[1]))
    p.part("layers", layers)
    bdir = os.path.join(p.mnt, "blobs")
    os.makedirs(bdir)
    bodies = [os.urandom(n) for n in sizes]

    def write_blobs():
        for i, b in enumerate(bodies):
            s = write_body(os.path.join(bdir, str(i)), b, False)
            s.fsync()
            s.close()
        fsync_path(bdir, directory=True)
    p.part("blobs", write_blobs)

    def index():
        tmp, dst = os.path.join(p.mnt, "images.json.tmp"), os.path.join(p.mnt, "images.json")
        s = write_body(tmp, os.urandom(2048), False)
        s.fsync()
        s.close()
        os.rename(tmp, dst)
        fsync_path(p.mnt, directory=True)
    p.part("index", index)


ROW_FN = {"biglayer-cold": row_biglayer_cold, "bigcontext-cold": row_bigcontext_cold,
          "bigcontext-edit": row_bigcontext_edit, "ci-edit-edit": row_ci_edit_edit}
ROW_FS = {"biglayer-cold": "4G", "bigcontext-cold": "4G", "bigcontext-edit": "4G",
          "ci-edit-edit": "1G"}


# --------------------------------------------------------------------------- the floors

def stat(samples, row, part, key):
    """The median of `key` ("wall_ms" or "cpu_ms") over a part's samples, or with key
    "min_wall" their least wall: the sample the machine's other work disturbed least."""
    v = [s["wall_ms" if key == "min_wall" else key] for s in samples
         if s["row"] == row and s["part"] == part]
    if not v:
        return 0.0
    return min(v) if key == "min_wall" else statistics.median(v)


def floors(samples):
    """Per row, the designs' critical paths from the parts' median walls, least walls and
    median CPU ms (the same formula each), as (name, formula, wall, least wall, cpu)."""
    out = {}
    for row in ROWS:
        if not any(s["row"] == row for s in samples):
            continue

        def m(part, key, row=row):
            return stat(samples, row, part, key)
        designs = {
            "biglayer-cold": [
                ("blob (today's design)", "run + max(sha256, blob_ew_write) + blob_ew_fsync",
                 lambda k: m("run", k) + max(m("sha256", k), m("blob_ew_write", k))
                 + m("blob_ew_fsync", k)),
                ("snapshot synced after the RUN", "run + hash_sync",
                 lambda k: m("run", k) + m("hash_sync", k)),
                ("snapshot written back during the RUN", "run_wb + hash_tail",
                 lambda k: m("run_wb", k) + m("hash_tail", k)),
            ],
            "bigcontext-cold": [
                ("blob (today's design)", "scan + ctx_hash + copy + run + tar_blob + blob_fsync",
                 lambda k: m("scan", k) + m("ctx_hash", k) + m("copy", k) + m("run", k)
                 + m("tar_blob", k) + m("blob_fsync", k)),
                ("snapshot synced (lazy blob)", "scan + ctx_hash + copy + run + max(tar_hash, snap_sync)",
                 lambda k: m("scan", k) + m("ctx_hash", k) + m("copy", k) + m("run", k)
                 + max(m("tar_hash", k), m("snap_sync", k))),
            ],
            "bigcontext-edit": [
                ("blob (today's design)", "scan + clone + run + copy_rw + copy_fsync",
                 lambda k: m("scan", k) + m("clone", k) + m("run", k) + m("copy_rw", k)
                 + m("copy_fsync", k)),
                ("snapshot synced (lazy blob)", "scan + clone + run + max(sha256, snap_sync)",
                 lambda k: m("scan", k) + m("clone", k) + m("run", k)
                 + max(m("sha256", k), m("snap_sync", k))),
                ("blob of the earlier blob's ranges", "scan + clone + run + max(sha256, ranges_fsync)",
                 lambda k: m("scan", k) + m("clone", k) + m("run", k)
                 + max(m("sha256", k), m("ranges_fsync", k))),
                ("no clone, ranges blob", "scan + edit_upper + max(run_overlay, sha256) + ranges_fsync",
                 lambda k: m("scan", k) + m("edit_upper", k)
                 + max(m("run_overlay", k), m("sha256", k)) + m("ranges_fsync", k)),
            ],
            "ci-edit-edit": [
                ("blob (today's design)", "scan + clone + run_ns + layers + blobs + index",
                 lambda k: m("scan", k) + m("clone", k) + m("run_ns", k) + m("layers", k)
                 + m("blobs", k) + m("index", k)),
                ("snapshot synced (lazy blob)", "scan + clone + run_ns + max(layers, snap_sync) + index",
                 lambda k: m("scan", k) + m("clone", k) + m("run_ns", k)
                 + max(m("layers", k), m("snap_sync", k)) + m("index", k)),
            ],
        }[row]
        out[row] = [(n, f, fn("wall_ms"), fn("min_wall"), fn("cpu_ms")) for n, f, fn in designs]
    return out


def against(path):
    """`tool_ratios` of a run.py `--fs` JSON's samples."""
    with open(path) as f:
        return tool_ratios(json.load(f)["samples"])


def tool_ratios(samples):
    """BuildKit's median wall per row, the median span of each of its vertices (from the end
    of the vertex before it), and strata's median phases, from run.py `--fs` samples."""
    out = {}
    for row, (scen, measure) in ROW_KEY.items():
        sel = [s for s in samples if s.get("scenario") == scen
               and s.get("measure") == measure and s.get("ok")]
        bk = [s for s in sel if s["tool"] == "buildkit"]
        st = [s for s in sel if s["tool"] == "strata"]
        if not bk or not st:
            continue
        verts = {}
        for s in bk:  # each vertex's span: its end less the end before it (ms resolution)
            prev = 0.0
            for v in s.get("vertices") or []:
                verts.setdefault(v["name"][:60], []).append(v["t_end"] - prev)
                prev = v["t_end"]
        phases = {}
        for s in st:
            for k, v in (s.get("phases_ms") or {}).items():
                phases.setdefault(k, []).append(v)
        out[row] = {
            "buildkit_s": statistics.median(s["wall"] for s in bk),
            "strata_s": statistics.median(s["wall"] for s in st),
            "buildkit_vertices_s": {k: statistics.median(v) for k, v in verts.items()},
            "strata_phases_ms": {k: round(statistics.median(v), 1) for k, v in phases.items()
                                 if statistics.median(v) >= 0.5},
        }
    return out


GOAL = {"biglayer-cold": 0.80, "bigcontext-cold": 0.15, "bigcontext-edit": 0.10,
        "ci-edit-edit": 0.12}


def report(samples, ref, n):
    lines = []
    for row in ROWS:
        rs = [s for s in samples if s["row"] == row]
        if not rs:
            continue
        loads = sorted(s["load1"] for s in rs)
        lines += ["", "## %s (N=%d, 1-minute load %.1f–%.1f, median %.1f)" % (
            row, len({(s.get("run"), s["rep"]) for s in rs}), loads[0], loads[-1],
            statistics.median(loads)), "",
            "| part | wall ms median [min–max] | CPU ms median [min–max] |", "|---|---|---|"]
        for part in dict.fromkeys(s["part"] for s in rs):
            w = [s["wall_ms"] for s in rs if s["part"] == part]
            c = [s["cpu_ms"] for s in rs if s["part"] == part]
            lines.append("| %s | %.0f [%.0f–%.0f] | %.0f [%.0f–%.0f] |" % (
                part, statistics.median(w), min(w), max(w), statistics.median(c), min(c), max(c)))
        lines += ["", "| design | critical path | wall ms (medians) | wall ms (least) | CPU ms "
                  "(medians) | least wall × BuildKit | goal |", "|---|---|---|---|---|---|---|"]
        bk = ref.get(row, {}).get("buildkit_s")
        for name, formula, wall, least, c in floors(samples)[row]:
            ratio = "%.2f×" % (least / 1000 / bk) if bk else "–"
            lines.append("| %s | %s | %.0f | %.0f | %.0f | %s | %.2f×%s |" % (
                name, formula, wall, least, c, ratio, GOAL[row],
                " (%.0f ms)" % (GOAL[row] * bk * 1000) if bk else ""))
        if row in ref:
            x = ref[row]
            lines += ["", "BuildKit %.3f s, strata %.3f s (medians of the builds set against); strata's "
                      "phases (ms): %s" % (x["buildkit_s"], x["strata_s"], ", ".join(
                          "%s %s" % kv for kv in x["strata_phases_ms"].items())),
                      "BuildKit's steps (median s from the end of the one before, the first from "
                      "the client's start): %s" % "; ".join(
                          "%s %.3f" % kv for kv in x["buildkit_vertices_s"].items() if kv[1] >= 0.005)]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--row", default="all", help="all, or some of " + ",".join(ROWS))
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared", "bench"))
    ap.add_argument("--fs-dir", default="/var/tmp/strata-floor")
    ap.add_argument("--against", help="a run.py --fs JSON: BuildKit's medians, strata's phases")
    ap.add_argument("--tools", metavar="STRATA",
                    help="also build the rows' scenarios with BuildKit and this strata binary "
                         "in every repetition (fsmode.py's blocks), and set the floors against "
                         "those builds")
    ap.add_argument("--tag", default="")
    ap.add_argument("--warmup", type=int, default=1, help="repetitions run first and dropped")
    ap.add_argument("--table-only", nargs="+",
                    help="floor JSONs: print the tables of their samples pooled")
    a = ap.parse_args()
    if a.table_only:  # several files: their samples pooled
        samples, tool_samples, ref = [], [], {}
        for path in a.table_only:
            with open(path) as f:
                d = json.load(f)
            samples += [dict(s, run=path) for s in d["samples"]]
            tool_samples += d.get("tool_samples") or []
            ref = d.get("against") or ref
        if tool_samples:
            ref = tool_ratios(tool_samples)
        if a.against:
            ref = against(a.against)
        print(report(samples, ref, 0))
        return
    rows = ROWS if a.row == "all" else tuple(a.row.split(","))
    for r in rows:
        if r not in ROW_FN:
            ap.error("unknown row %r" % r)
    h = fsmode.load_harness(a.shared)
    scen = h.gen.generate(os.path.join(a.work, "scenarios"), "busybox:local", 20261122,
                          ["bigcontext", "ci-edit", "biglayer"], quiet=True)
    base = h.Base(a.work, "busybox:local")
    ctx = {k: os.path.join(a.work, "scenarios", k, "ctx") for k in scen}
    env = {"rootfs": base.rootfs, "ctx": ctx, "edits": {}, "edited": {}}
    for k in ("bigcontext", "ci-edit"):  # the edit run.py makes: a unique line appended
        env["edits"][k] = scen[k]["edit_file"]
        with open(os.path.join(ctx[k], scen[k]["edit_file"]), "rb") as f:
            env["edited"][k] = f.read() + b"\n// edit floor\n"
    env["floorfs"] = os.path.join(a.work, "floorfs")
    subprocess.run(["gcc", "-O2", "-pthread", "-o", env["floorfs"], os.path.join(HERE, "floorfs.c"),
                    "-lcrypto"], check=True)
    if any(r.startswith("bigcontext") for r in rows):
        p = subprocess.run(["tar", "-C", ctx["bigcontext"], "--format=ustar", "--sort=name",
                            "--transform=s,^\\.,app,", "-cf", "-", "."], stdout=subprocess.PIPE,
                           check=True)
        env["bigtar"] = p.stdout
    if "biglayer-cold" in rows:
        env["body500"] = os.urandom(524288000)
    ref = against(a.against) if a.against else {}
    tools = None
    if a.tools:  # both tools' builds of the rows' scenarios, in the same repetitions
        strata = os.path.abspath(a.tools)
        ns = argparse.Namespace(shared=a.shared, measure="cold,edit", base="busybox:local",
                                seed=20261122, fs="ext4", fs_dir="/var/tmp/strata-coldbench",
                                n=a.n, n_for={}, profile=False,
                                scenarios=",".join(dict.fromkeys(ROW_KEY[r][0] for r in rows)))
        fsmode.check(ns)
        tools = fsmode.Run(ns, strata, a.work, os.path.join(HERE, "results"), "floor")
    samples = []
    meta = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "loadavg_start": os.getloadavg(), "rows": rows, "n": a.n, "warmup": a.warmup,
            "uname": os.uname().release, "nproc": os.cpu_count()}
    for rep in range(-a.warmup, a.n):  # negative: warm-up, not kept (a new VM's memory is
        for row in rows:               # slow the first time it is touched)
            name = "floor-%d-%s-%d" % (os.getpid(), row, rep)
            with freshfs.fresh("ext4", a.fs_dir, name, size=ROW_FS[row]) as mnt:
                before = len(samples)
                ROW_FN[row](Rep(samples, row, rep, mnt), env)
                if rep < 0:
                    del samples[before:]
                    print("warm-up %s done" % row, file=sys.stderr, flush=True)
                    continue
                print("rep %d %s (load %.2f): %s" % (rep + 1, row, os.getloadavg()[0], ", ".join(
                    "%s %.0f/%.0f" % (s["part"], s["wall_ms"], s["cpu_ms"])
                    for s in samples[before:])), file=sys.stderr, flush=True)
        if tools and rep >= 0:
            for scen in tools.scens:
                for block in (tools.buildkit_block, tools.strata_block):
                    try:
                        block(scen, rep)
                    except Exception as e:  # noqa: BLE001 (one block lost, not the run)
                        print("%s rep %d: block aborted: %s" % (scen["name"], rep, str(e)[:300]),
                              file=sys.stderr, flush=True)
    meta["loadavg_end"] = os.getloadavg()
    if tools:
        ref = tool_ratios(tools.samples)
        meta["tools"] = {"strata": strata, "buildkit": subprocess.run(
            [tools.docker, "--version"], capture_output=True, text=True).stdout.strip(),
            "machine": tools.h.machine_info()}
    table = report(samples, ref, a.n)
    print(table)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = os.path.join(HERE, "results", "floor-%s%s.json" % (stamp, "-" + a.tag if a.tag else ""))
    with open(out, "w") as f:
        json.dump({"meta": meta, "n": a.n, "samples": samples, "against": ref,
                   "against_file": a.against, "tool_samples": tools.samples if tools else [],
                   "floors": {r: [dict(zip(("design", "path", "wall_ms", "least_wall_ms", "cpu_ms"), d))
                                  for d in v] for r, v in floors(samples).items()}},
                  f, indent=1)
    print("\n%s" % out, file=sys.stderr)


def _interrupt(*_):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # unwinds freshfs's mounts, as run.py does
    with contextlib.suppress(KeyboardInterrupt):
        main()
