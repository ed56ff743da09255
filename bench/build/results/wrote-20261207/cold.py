#!/usr/bin/env python3
"""cold.py N LABEL=BIN [LABEL=BIN ...]: N rounds; in each, one cold bigcontext build per binary
(in the given order, the order flipped every other round), each on a fresh journaled ext4 loop
file. Phases from the build's rawjson events (bench/build/phases.py), CPU and peak RSS from
/usr/bin/time. STRACE=DIR: each build under `strace -f -c` instead (counts in DIR/LABEL-i.txt);
PERF=DIR: under `perf record -F 1999 --call-graph dwarf`, folded stacks in DIR/LABEL-i.folded.
SCEN=DIR: another scenario (DIR/Dockerfile, DIR/ctx). Results: OUT (default
/var/tmp/wrote-bench/out.json)."""
import json, os, statistics, subprocess, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import phases
WORK = os.path.join(HERE, "..", "..", "work")
SCEN = os.environ.get("SCEN", os.path.join(WORK, "scenarios", "bigcontext"))
ROOTFS = os.path.join(WORK, "base", "rootfs.tar")
B = "/var/tmp/wrote-bench"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
n = int(sys.argv[1])
bins = [a.split("=", 1) for a in sys.argv[2:]]
strace = os.environ.get("STRACE")
perf = os.environ.get("PERF")
out = os.environ.get("OUT", B + "/out.json")

def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)

def build(binary, env, trace, data=None):
    pre = ["strace", "-f", "-c", "-o", trace] if trace else ["/usr/bin/time", "-f", "%M %U %S"]
    if data:
        pre = ["perf", "record", "-q", "-F", "1999", "--call-graph", "dwarf,16384", "-o", data, "--"]
    t0 = time.time()
    p = subprocess.run(pre + [binary, "build", "--progress", "rawjson", "--network", "none",
                              "-t", "b:1", "-f", SCEN + "/Dockerfile", SCEN + "/ctx"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t1 = time.time()
    if p.returncode:
        print(p.stdout.decode()[-2000:], p.stderr.decode()[-2000:])
        sys.exit(1)
    lines = [(0, l) for l in (p.stdout.decode() + "\n" + p.stderr.decode()).splitlines()]
    parts, apart = phases.breakdown(phases.events(lines), t0, t1)
    r = {"wall": t1 - t0, "parts": parts, "context_checksum": apart}
    if not trace and not data:
        rss, usr, syst = p.stderr.decode().split()[-3:]
        r.update(rss_kb=int(rss), cpu=float(usr) + float(syst), user=float(usr), sys=float(syst))
    return r

os.makedirs(B + "/mnt", exist_ok=True)
res = []
for i in range(n):
    order = bins if i % 2 == 0 else bins[::-1]
    for label, binary in order:
        img, mnt = B + "/fs.img", B + "/mnt"
        with open(img, "wb") as f:
            f.truncate(12 << 30)
        run(["mkfs.ext4", "-q", "-F", "-O", "has_journal", "-E", "lazy_itable_init=0,lazy_journal_init=0", img])
        run(["mount", "-o", "loop", img, mnt])
        try:
            env = dict(os.environ, STRATA_ROOT=mnt + "/root")
            run([binary, "import", "-c", "ENV PATH=" + PATH, "-c", 'CMD ["sh"]', ROOTFS, "busybox:local"], env=env)
            load = os.getloadavg()[0]
            trace = strace and os.path.join(strace, "%s-%d.txt" % (label, i))
            data = perf and os.path.join(B, "perf.data")
            r = build(binary, env, trace, data)
            if data:
                import flame
                script = subprocess.run(["perf", "script", "-i", data, "--no-inline"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                folded = flame.fold(script.stdout.decode(errors="replace").splitlines())
                with open(os.path.join(perf, "%s-%d.folded" % (label, i)), "w") as f:
                    for k in sorted(folded):
                        f.write("%s %d\n" % (k, folded[k]))
                os.unlink(data)
            r.update(label=label, round=i, load=load)
            res.append(r)
        finally:
            subprocess.run(["umount", mnt])
            os.unlink(img)
        print(label, i, "wall=%.3f diff=%.0f load=%.2f" % (r["wall"], 1000 * r["parts"].get("layer_diff", 0), load), flush=True)
json.dump(res, open(out, "w"), indent=1)
keys = ["files", "layer_diff", "layer_tar", "process", "scheduler, keys", "image, exit"]
for label, _ in bins:
    rs = [r for r in res if r["label"] == label]
    med = lambda f: statistics.median(f(r) for r in rs)
    print(label, "N=%d wall med %.3f [%.3f-%.3f]" % (len(rs), med(lambda r: r["wall"]), min(r["wall"] for r in rs), max(r["wall"] for r in rs)),
          " ".join("%s %.0f" % (k, 1000 * med(lambda r: r["parts"].get(k, 0))) for k in keys),
          "checksum %.0f" % (1000 * med(lambda r: r["context_checksum"])),
          ("cpu %.3f sys %.3f rss %d" % (med(lambda r: r["cpu"]), med(lambda r: r["sys"]), max(r["rss_kb"] for r in rs))) if "cpu" in rs[0] else "",
          "load %.1f-%.1f" % (min(r["load"] for r in rs), max(r["load"] for r in rs)))
