#!/usr/bin/env python3
"""A/B no-op bench in the harness's conditions: per rep and binary, a fresh ext4 loop fs,
import, a cold build (untimed), then K no-ops timed by the shared harness's `timed` under
/usr/bin/time, rawjson. Interleaved A B / B A."""
import json, os, sys, time, resource, subprocess, argparse
sys.path.insert(0, "/work/wt-noop/bench/build")
import freshfs, fsmode, phases
h = fsmode.load_harness("/work/shared/bench")
W = "/work/main/bench/build/work"
ap = argparse.ArgumentParser()
ap.add_argument("--bin", action="append", required=True)  # name=path
ap.add_argument("--scen", default="manysteps,ci-edit")
ap.add_argument("-n", type=int, default=5)
ap.add_argument("-k", type=int, default=3)
ap.add_argument("--out", required=True)
ap.add_argument("--strace", action="store_true")
a = ap.parse_args()
bins = []
for b in a.bin:
    name, rest = b.split("=", 1)
    path, _, ev = rest.partition(":")
    bins.append((name, path, dict([ev.split("=", 1)]) if ev else {}))
out = open(a.out, "a")
for rep in range(a.n):
    order = bins if rep % 2 == 0 else bins[::-1]
    for sc in a.scen.split(","):
        for name, path, extra in order:
            with freshfs.fresh("ext4", "/var/tmp/noop-bench", "nb-%d" % os.getpid()) as mnt:
                env = dict(os.environ, STRATA_ROOT=os.path.join(mnt, "root"), **extra)
                subprocess.run([path, "import", "-c", "ENV PATH=" + fsmode.PATH_DEFAULT, "-c", 'CMD ["sh"]',
                                W + "/base/rootfs.tar", "busybox:local"], env=env, check=True,
                               stdout=subprocess.DEVNULL)
                d = W + "/scenarios/" + sc
                df = json.load(open(d + "/scenario.json"))
                def cmd():
                    return ["/usr/bin/time", "-o", "/tmp/noop/maxrss", "-f", "%M", path, "build", "--progress",
                            "rawjson", "--network", "none", "-t", "sbench-%s:latest" % sc,
                            "-f", os.path.join(d, "Dockerfile"), os.path.join(d, "ctx")]
                for k in range(-1, a.k):
                    c = cmd()
                    if a.strace and k == 0:
                        c = ["strace", "-f", "-tt", "-T", "-o", "/tmp/noop/st-%s-%s-%d.txt" % (name, sc, rep)] + c[5:]
                    load = os.getloadavg()[0]
                    t0 = time.time()
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    res = h.timed(c, env, "/tmp/noop/logs/%s.%s.%d.%d.log" % (name, sc, rep, k))
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    assert res["rc"] == 0, res
                    parts, _ = phases.breakdown(phases.events(res["lines"]), t0, t0 + res["wall"])
                    rec = {"bin": name, "scen": sc, "rep": rep, "k": k, "wall": res["wall"],
                           "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), "load": load,
                           "phases": {p: round(v * 1000, 2) for p, v in parts.items()}}
                    out.write(json.dumps(rec) + "\n"); out.flush()
                    if True:
                        print("%-6s %-9s rep%d k%d %6.1f ms cpu %5.1f load %.2f %s" % (name, sc, rep, k, res["wall"]*1000, rec["cpu"]*1000, load, rec["phases"]), flush=True)
