#!/usr/bin/env python3
"""Split a no-op's wall time with --progress rawjson event times: start -> first event,
first -> last event, last event -> exit. Interleaved bins. usage: split.py SCEN N BIN..."""
import os, sys, time, json, statistics
scen, n, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
base = "/var/tmp/front2/scen/" + scen
env = dict(os.environ, STRATA_ROOT="/var/tmp/front2/root")
def once(b):
    r, w = os.pipe()
    t0 = time.time()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(w, 2)
        os.execve(b, [b, "build", "--progress", "rawjson", "--network", "none", "-t", "bench-" + scen,
                      "-f", base + "/Dockerfile", base + "/ctx"], env)
    os.close(w)
    data = b""
    while True:
        c = os.read(r, 65536)
        if not c: break
        data += c
    os.wait4(pid, 0)
    t1 = time.time()
    os.close(r)
    times = [json.loads(l)["time"] for l in data.decode().splitlines() if l.startswith("{")]
    return [(times[0] - t0) * 1000, (times[-1] - times[0]) * 1000, (t1 - times[-1]) * 1000, (t1 - t0) * 1000]
for b in bins:
    for _ in range(3): once(b)
l0 = os.getloadavg()[0]
res = {b: [] for b in bins}
for i in range(n):
    for b in (bins if i % 2 == 0 else bins[::-1]):
        res[b].append(once(b))
for b in bins:
    m = [statistics.median(x[k] for x in res[b]) for k in range(4)]
    print("%-10s %-14s front %5.2f  steps %5.2f  tail %5.2f  wall %5.2f ms (medians)" % ((scen, os.path.basename(b)) + tuple(m)))
print("load %.2f -> %.2f" % (l0, os.getloadavg()[0]))
