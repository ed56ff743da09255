#!/usr/bin/env python3
"""ab.py OUT N SCEN name=bin[:ENV=V] ...: no-ops alternated (rotating order), wall + CPU (wait4)."""
import os, sys, time, json, subprocess, statistics
out, n, scen = sys.argv[1], int(sys.argv[2]), sys.argv[3]
bins = []
for a in sys.argv[4:]:
    name, rest = a.split("=", 1)
    path, _, ev = rest.partition(":")
    env = dict(os.environ)
    if ev:
        k, v = ev.split("=", 1); env[k] = v
    bins.append((name, path, env))
W = "/work/main/bench/build/work/scenarios"
res = {b[0]: [] for b in bins}
f = open(out, "a")
for i in range(n):
    order = bins[i % len(bins):] + bins[:i % len(bins)]
    for name, path, env in order:
        cmd = [path, "build", "--progress", "rawjson", "--network", "none", "-t", "sbench-%s:latest" % scen,
               "-f", "%s/%s/Dockerfile" % (W, scen), "%s/%s/ctx" % (W, scen)]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in p.stdout: pass
        _, st, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        assert st == 0
        r = {"bin": name, "scen": scen, "wall_ms": wall * 1e3, "cpu_ms": (ru.ru_utime + ru.ru_stime) * 1e3,
             "user_ms": ru.ru_utime * 1e3, "sys_ms": ru.ru_stime * 1e3, "nvcsw": ru.ru_nvcsw, "nivcsw": ru.ru_nivcsw, "load": load}
        res[name].append(r); f.write(json.dumps(r) + "\n")
for name, rs in res.items():
    w = [r["wall_ms"] for r in rs]; c = [r["cpu_ms"] for r in rs]
    print("%-4s %-9s n=%d wall med %.2f min %.2f | cpu med %.2f (user %.2f sys %.2f) | csw %d | load %.1f-%.1f" % (
        name, scen, len(rs), statistics.median(w), min(w), statistics.median(c),
        statistics.median([r["user_ms"] for r in rs]), statistics.median([r["sys_ms"] for r in rs]),
        statistics.median([r["nvcsw"] + r["nivcsw"] for r in rs]), min(r["load"] for r in rs), max(r["load"] for r in rs)))
