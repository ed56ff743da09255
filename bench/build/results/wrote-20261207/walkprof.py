#!/usr/bin/env python3
"""walkprof.py FOLDED...: where the layer writer's walk spends CPU (samples of a `perf record
--call-graph dwarf` profile folded by bench/build/flame.py, frames under
`strata_worker::diff::walk`), by what it was doing. Writes into the store (SHA-256, the blob
file: the `layer_tar` phase, `TimedWrite`) are counted apart; `via /proc` counts the samples
whose path lookup went through `/proc/self/fd` (proc_pid_get_link, tid_fd_revalidate,
pid_revalidate)."""
import collections, sys
PARTS = [("TimedWrite", "store write (layer_tar)"),
         ("symlink_metadata", "lstat (statx)"), ("lstat_at", "lstat (statx)"),
         ("read_xattrs", "xattrs (llistxattr)"),
         ("open_read_nofollow", "open (openat, /proc path)"), ("confined::openat2", "open (openat2, pinned dir)"),
         ("as std::io::Read>::read", "read data"), ("ksys_read", "read data"),
         ("__close", "close"), ("__x64_sys_close", "close"),
         ("descend", "list directories"), ("sorted_names", "list directories"),
         ("encode_header", "encode headers"), ("Written::get", "look up the record"),
         ("is_opaque", "opaque check")]
PROC = ("proc_pid_get_link", "tid_fd_revalidate", "pid_revalidate", "proc_fd_link")
for path in sys.argv[1:]:
    total, cats, proc = 0, collections.Counter(), 0
    for line in open(path):
        stack, _, n = line.rstrip("\n").rpartition(" ")
        n = int(n)
        total += n
        frames = stack.split(";")
        idx = [i for i, f in enumerate(frames) if f.startswith("strata_worker::diff::walk")]
        if not idx:
            continue
        below = frames[idx[0] + 1:]
        cat = next((name for f in below for key, name in PARTS if key in f), "other")
        cats[cat] += n
        if cat != "store write (layer_tar)" and any(p in f for f in below for p in PROC):
            proc += n
    walk = sum(v for k, v in cats.items() if not k.startswith("store"))
    print("%s: %d samples; the walk %d without its store writes (%d); via /proc %d" % (
        path, total, walk, cats["store write (layer_tar)"], proc))
    for k, v in cats.most_common():
        if not k.startswith("store"):
            print("  %-28s %5d  %3.0f%%" % (k, v, 100.0 * v / max(walk, 1)))
