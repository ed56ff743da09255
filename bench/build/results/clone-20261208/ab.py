#!/usr/bin/env python3
"""A/B of bigcontext's one-file edit: per sample a fresh journaled ext4 (as fsmode), import,
cold build, one edit, the edit build timed (wall, the COPY's phases, CPU via /usr/bin/time)."""
import json, os, subprocess, sys, time, statistics, shutil
BASE = "/var/tmp/clonebench"
SCEN = BASE + "/scen"
ROOTFS = "/work/main/bench/build/work/base/rootfs.tar"
PATH_DEFAULT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)
def sample(binary, nonce, strace=None, perf=None):
    img, mnt = BASE + "/img", BASE + "/mnt"
    os.makedirs(mnt, exist_ok=True)
    run(["truncate", "-s", "4G", img])
    run(["mkfs.ext4", "-q", "-F", "-O", "has_journal", "-E", "lazy_itable_init=0,lazy_journal_init=0", img])
    run(["mount", "-o", "loop", img, mnt])
    try:
        env = dict(os.environ, STRATA_ROOT=mnt + "/root")
        run([binary, "import", "-c", "ENV PATH=" + PATH_DEFAULT, "-c", 'CMD ["sh"]', ROOTFS, "busybox:local"], env=env, stdout=subprocess.DEVNULL)
        b = [binary, "build", "--network", "none", "-t", "t:1", "-f", SCEN + "/Dockerfile", SCEN + "/ctx"]
        run(b + ["--progress", "plain"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ef = SCEN + "/ctx/pkg00/mod00/file000.bin"
        orig = open(ef, "rb").read()
        try:
            with open(ef, "wb") as f:
                f.write(orig + ("\n// edit %s\n" % nonce).encode())
            load = os.getloadavg()[0]
            pre = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", BASE + "/time"]
            if strace:
                pre = ["strace", "-f", "-c", "-o", strace] + pre[:0]
            if perf:
                pre = ["perf", "record", "-q", "-F", "2999", "--call-graph", "dwarf,16384", "-o", perf]
            t0 = time.time()
            p = subprocess.run(pre + b + ["--progress", "rawjson"], env=env, capture_output=True, text=True)
            wall = time.time() - t0
            if p.returncode:
                sys.exit(p.stderr[-2000:])
        finally:
            with open(ef, "wb") as f:
                f.write(orig)
        phases = {}
        for line in (p.stdout + p.stderr).splitlines():
            if line.startswith("{"):
                e = json.loads(line)
                if e.get("event") == "finished" and e.get("phases"):
                    for k, v in e["phases"].items():
                        phases[k] = phases.get(k, 0) + v
        cpu, rss = None, None
        if not strace and not perf:
            _, u, s, rss = open(BASE + "/time").read().split()
            cpu = float(u) + float(s)
        return {"wall": wall, "cpu": cpu, "load": load, "phases": phases, "max_rss_kb": int(rss) if cpu is not None else None}
    finally:
        run(["umount", mnt]); os.unlink(img)
if __name__ == "__main__":
    n = int(sys.argv[1]); bins = sys.argv[2:]
    out = {b: [] for b in bins}
    for i in range(n):
        for b in bins:
            s = sample(b, "%d-%s" % (i, time.time()))
            out[b].append(s)
            print(os.path.basename(b), "wall %.3f cpu %.3f files %.3f rss %s load %.2f" % (s["wall"], s["cpu"], s["phases"].get("files", 0), s["max_rss_kb"], s["load"]), flush=True)
    for b in bins:
        xs = out[b]
        fs = sorted(x["phases"].get("files", 0) for x in xs)
        print(b, "files min %.3f" % fs[0])
        print(b, "median wall %.3f files %.3f cpu %.3f" % tuple(statistics.median(x[k] if k != "files" else x["phases"].get("files", 0) for x in xs) for k in ("wall", "files", "cpu")))
    json.dump(out, open(BASE + "/ab-%s.json" % time.strftime("%H%M%S"), "w"), indent=1)
