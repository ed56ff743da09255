#!/usr/bin/env python3
"""cold.py LABEL BIN N [edit]: N cold bigcontext builds (then one-file edit if 'edit'), each on a fresh ext4 loop fs."""
import json, os, subprocess, sys, time
sys.path.insert(0, "/work/wt-cores/bench/build")
import phases
label, binary, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
edit = len(sys.argv) > 4 and sys.argv[4] == "edit"
B = "/var/tmp/cores-bench"
scen = os.environ.get("SCEN", B + "/scen/bigcontext")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
def build(env, tag):
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", binary, "build", "--progress", "rawjson", "--network", "none",
                        "-t", "b:1", "-f", scen + "/Dockerfile", scen + "/ctx"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t1 = time.time()
    if p.returncode:
        print(p.stdout.decode()[-2000:], p.stderr.decode()[-2000:]); sys.exit(1)
    lines = [(0, l) for l in (p.stdout.decode() + "\n" + p.stderr.decode()).splitlines()]
    evs = phases.events(lines)
    parts, apart = phases.breakdown(evs, t0, t1)
    rss, usr, syst = p.stderr.decode().split()[-3:]; rss = int(rss)
    return {"wall": t1 - t0, "rss_kb": rss, "cpu": float(usr) + float(syst), "user": float(usr), "sys": float(syst), "parts": parts, "context_checksum": apart, "tag": tag}
res = []
for i in range(n):
    img, mnt = B + "/fs.img", B + "/mnt"
    os.makedirs(mnt, exist_ok=True)
    with open(img, "wb") as f: f.truncate(6 << 30)
    run(["mkfs.ext4", "-q", "-F", "-O", "has_journal", "-E", "lazy_itable_init=0,lazy_journal_init=0", img])
    run(["mount", "-o", "loop", img, mnt])
    try:
        env = dict(os.environ, STRATA_ROOT=mnt + "/root")
        run([binary, "import", "-c", "ENV PATH=" + PATH, "-c", 'CMD ["sh"]', B + "/rootfs.tar", "busybox:local"], env=env)
        load = os.getloadavg()[0]
        r = build(env, "cold"); r["load"] = load; res.append(r)
        if edit:
            ef = scen + "/ctx/pkg00/mod00/file000.bin"
            with open(ef, "r+b") as f: f.write(os.urandom(8))
            r = build(env, "edit"); r["load"] = os.getloadavg()[0]; res.append(r)
    finally:
        subprocess.run(["umount", mnt]); os.unlink(img)
    print(label, i, " ".join("%s=%.3f" % (x["tag"], x["wall"]) for x in res[-2:]), "load=%.2f" % load, flush=True)
json.dump(res, open(B + "/out/%s.json" % label, "w"), indent=1)
import statistics
for tag in ("cold", "edit"):
    rs = [r for r in res if r["tag"] == tag]
    if not rs: continue
    keys = ["files", "layer_diff", "layer_tar", "scheduler, keys", "image, exit"]
    print(label, tag, "wall med %.3f [%.3f-%.3f]" % (statistics.median(r["wall"] for r in rs), min(r["wall"] for r in rs), max(r["wall"] for r in rs)),
          "checksum %.0f" % (1000*statistics.median(r["context_checksum"] for r in rs)),
          " ".join("%s %.0f" % (k, 1000*statistics.median(r["parts"].get(k, 0) for r in rs)) for k in keys),
          "rss %d" % max(r["rss_kb"] for r in rs), "load %.1f-%.1f" % (min(r["load"] for r in rs), max(r["load"] for r in rs)))
