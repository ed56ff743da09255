#!/usr/bin/env python3
"""Interleaved edit builds: ab.py N BIN... ; prints median wall, CPU and phase parts per binary."""
import json, os, subprocess, sys, time, statistics
sys.path.insert(0, "/work/wt-ciedit/bench/build")
import phases
W = "/var/tmp/ciedit"
n = int(sys.argv[1]); bins = sys.argv[2:]
env = dict(os.environ, STRATA_ROOT=W + "/mnt/root")
res = {b: [] for b in bins}
for i in range(n):
    for b in bins:
        subprocess.run([W + "/edit.sh"], check=True)
        load = os.getloadavg()[0]
        cmd = [b, "build", "--progress", "rawjson", "--network", "none", "-t", "sbench-ci-edit:latest",
               "-f", W + "/sc/ci-edit/Dockerfile", W + "/sc/ci-edit/ctx"]
        t0 = time.time()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        t1 = time.time()
        assert status == 0, out[-2000:]
        lines = [(0, l) for l in out.decode().splitlines()]
        parts, _ = phases.breakdown(phases.events(lines), t0, t1)
        res[b].append({"wall": t1 - t0, "cpu": ru.ru_utime + ru.ru_stime, "load": load, "parts": parts})
json.dump(res, open(W + "/ab-%d.json" % int(time.time()), "w"))
for b in bins:
    s = res[b]
    med = lambda xs: statistics.median(xs) * 1000
    print("%s: wall %.1f ms [%.1f-%.1f] cpu %.1f ms load %.1f-%.1f" % (b, med([x["wall"] for x in s]),
          min(x["wall"] for x in s) * 1000, max(x["wall"] for x in s) * 1000, med([x["cpu"] for x in s]),
          min(x["load"] for x in s), max(x["load"] for x in s)))
    keys = sorted({k for x in s for k in x["parts"]}, key=lambda k: phases.ORDER.index(k) if k in phases.ORDER else 99)
    print("   " + "  ".join("%s %.1f" % (k, med([x["parts"].get(k, 0) for x in s])) for k in keys))
