#!/usr/bin/env python3
"""Interleaved A/B timing of strata no-op builds: A B A B ..., wall (ms) and CPU (user+sys ms
from wait4), medians; load before/after. usage: ab.py SCEN N BIN_A BIN_B [more bins]"""
import os, sys, time, json, statistics, subprocess
scen, n, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
base = "/var/tmp/front2/scen/" + scen
env = dict(os.environ, STRATA_ROOT="/var/tmp/front2/root")
def argv(b):
    if scen == "version":
        return [b, "--version"]
    return [b, "build", "--progress", "plain", "--network", "none", "-t", "bench-" + scen,
            "-f", base + "/Dockerfile", base + "/ctx"]
devnull = os.open(os.devnull, os.O_WRONLY)
def once(b):
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.dup2(devnull, 1); os.dup2(devnull, 2)
        os.execve(b, argv(b), env)
    _, status, ru = os.wait4(pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    assert os.waitstatus_to_exitcode(status) == 0, b
    return wall, (ru.ru_utime + ru.ru_stime) * 1000
for b in bins:  # warm-up
    for _ in range(3): once(b)
load0 = os.getloadavg()[0]
res = {b: [] for b in bins}
for i in range(n):
    order = bins if i % 2 == 0 else bins[::-1]
    for b in order:
        res[b].append(once(b))
load1 = os.getloadavg()[0]
out = {"scenario": scen, "n": n, "load": [load0, load1], "runs": {}}
for b in bins:
    w = [x[0] for x in res[b]]; c = [x[1] for x in res[b]]
    out["runs"][b] = {"wall": w, "cpu": c}
    print("%-12s %-45s wall median %6.2f ms (min %6.2f)  cpu median %6.2f ms" % (
        scen, os.path.basename(b), statistics.median(w), min(w), statistics.median(c)))
print("load %.2f -> %.2f" % (load0, load1))
if len(sys.argv) > 1 and os.environ.get("AB_JSON"):
    with open(os.environ["AB_JSON"], "a") as f:
        f.write(json.dumps(out) + "\n")
