#!/usr/bin/env python3
"""Time from a no-op build's last stderr line to its exit (the runtime's end and the exit),
A B A B interleaved. usage: tail.py SCEN N BIN..."""
import os, sys, time, statistics
scen, n, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
base = "/var/tmp/front2/scen/" + scen
env = dict(os.environ, STRATA_ROOT="/var/tmp/front2/root")
def once(b):
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1); os.dup2(w, 2)
        os.execve(b, [b, "build", "--progress", "plain", "--network", "none", "-t", "bench-" + scen,
                      "-f", base + "/Dockerfile", base + "/ctx"], env)
    os.close(w)
    last = t0; data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk: break
        data += chunk
        if b"naming to" in data: last = time.perf_counter() if last == t0 else last
    eof = time.perf_counter()
    _, status, ru = os.wait4(pid, 0)
    end = time.perf_counter()
    os.close(r)
    return (end - t0) * 1000, (end - last) * 1000
for b in bins:
    for _ in range(3): once(b)
l0 = os.getloadavg()[0]
res = {b: [] for b in bins}
for i in range(n):
    for b in (bins if i % 2 == 0 else bins[::-1]):
        res[b].append(once(b))
for b in bins:
    print("%-10s %-14s wall median %6.2f  last line -> exit median %5.2f ms (p10 %5.2f, p90 %5.2f)" % (
        scen, os.path.basename(b), statistics.median(x[0] for x in res[b]),
        statistics.median(x[1] for x in res[b]),
        statistics.quantiles([x[1] for x in res[b]], n=10)[0],
        statistics.quantiles([x[1] for x in res[b]], n=10)[-1]))
print("load %.2f -> %.2f" % (l0, os.getloadavg()[0]))
