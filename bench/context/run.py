#!/usr/bin/env python3
"""Context-indexing bench: what `COPY . /app` of the 20,000-file bigcontext costs strata
before a single file is copied (scan + selection checksum + stat cache save), beside
BuildKit's no-op rebuild of the same context, in the same run.

Usage (from the repository root or anywhere):
    python3 bench/context/run.py [-n 5] [--shared ../shared] [--no-buildkit]

Per repetition, interleaved:
  strata cold   no stat cache (deleted first): every file is read and hashed
  strata warm   stat cache present, nothing changed: stats only
  strata edit   one file appended to (the scenario's edit_file)
  strata restore  the same file put back
  buildkit warm `docker build` of `FROM scratch` + `COPY . /app` over the same context,
                already built once: BuildKit's stat-based context sync plus the cached solve

The page cache is not dropped (the machine is shared; BASELINE.md does the same), so "cold"
means "no stat cache", not "cold disk". Wall, user and sys seconds and peak RSS come from
/usr/bin/time; the strata JSON line adds per-phase milliseconds and read counts.
Writes bench/context/results/run-<UTC>.json and prints a markdown table.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def timed(cmd, **kw):
    """Runs cmd under /usr/bin/time; returns (stdout, wall s, user s, sys s, max RSS KB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf.name] + cmd,
                           capture_output=True, text=True, **kw)
        if p.returncode != 0:
            sys.exit("command failed: %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
        wall, user, sys_, rss = tf.read().split()[-4:]
    return p.stdout + p.stderr, float(wall), float(user), float(sys_), int(rss)


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    ap.add_argument("--no-buildkit", action="store_true")
    args = ap.parse_args()

    work = os.path.join(REPO, "bench", "work")
    subprocess.run([sys.executable, os.path.join(args.shared, "bench", "scenarios", "gen.py"),
                    "--out", os.path.join(work, "scenarios"), "--only", "bigcontext"], check=True)
    scen = os.path.join(work, "scenarios", "bigcontext")
    ctx = os.path.join(scen, "ctx")
    with open(os.path.join(scen, "scenario.json")) as f:
        edit_file = os.path.join(ctx, json.load(f)["edit_file"])

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "strata-cache",
                    "--example", "context_bench"], check=True, cwd=REPO)
    bench = os.path.join(REPO, "target", "release", "examples", "context_bench")
    root = os.path.join(work, "context-bench-root")

    docker = shutil.which("docker") if not args.no_buildkit else None
    dockerfile = os.path.join(work, "context-bench.Dockerfile")
    with open(dockerfile, "w") as f:
        f.write("FROM scratch\nCOPY . /app\n")
    bk_cmd = [docker or "docker", "build", "--progress=plain", "--network=none",
              "-t", "strata-bench-context:tmp", "-f", dockerfile, ctx]
    if docker:
        print("priming BuildKit (one cold build of the context)...", file=sys.stderr)
        timed(bk_cmd)

    samples = {"strata cold": [], "strata warm": [], "strata edit": [], "strata restore": [],
               "buildkit warm": []}

    def strata(measure):
        out, wall, user, sys_, rss = timed([bench, ctx, root])
        info = json.loads(out.strip().splitlines()[-1])
        samples[measure].append(dict(info, wall=wall, user=user, sys=sys_, max_rss_kb=rss,
                                     load=load1()))

    for i in range(args.n):
        shutil.rmtree(root, ignore_errors=True)
        strata("strata cold")
        strata("strata warm")
        with open(edit_file, "rb") as f:
            original = f.read()
        with open(edit_file, "ab") as f:
            f.write(b"edit %d %f\n" % (i, time.time()))
        strata("strata edit")
        with open(edit_file, "wb") as f:
            f.write(original)
        strata("strata restore")  # putting the file back is an edit too: one re-hash
        # Let the restored file age past the racy window, so the next "warm" reads nothing.
        time.sleep(2.5)
        if docker:
            out, wall, user, sys_, rss = timed(bk_cmd)
            m = re.search(r"\[internal\] load build context\n(?:#\d+ .*\n)*?#\d+ DONE ([\d.]+)s", out)
            samples["buildkit warm"].append(dict(wall=wall, user=user, sys=sys_, max_rss_kb=rss,
                                                 context_s=float(m.group(1)) if m else None,
                                                 load=load1()))

    if docker:
        subprocess.run([docker, "rmi", "-f", "strata-bench-context:tmp"], capture_output=True)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out_path = os.path.join(HERE, "results", "run-%s.json" % stamp)
    with open(out_path, "w") as f:
        json.dump({"n": args.n, "context": "bigcontext (20,000 files, 205 MB)",
                   "nproc": os.cpu_count(), "samples": samples}, f, indent=1)

    def med(rows, key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(vals) if vals else float("nan")

    bk = med(samples["buildkit warm"], "wall")
    print("| measure | wall s median [min–max] | in-process ms² | cpu s (user+sys)¹ | peak RSS MB¹ | reads | vs BuildKit warm |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in samples.items():
        if not rows:
            continue
        walls = [r["wall"] for r in rows]
        cpu = statistics.median(r["user"] + r["sys"] for r in rows)
        reads = med(rows, "content_reads") if "content_reads" in rows[0] else "–"
        ratio = "%.1f× faster" % (bk / med(rows, "wall")) if name != "buildkit warm" and bk == bk else ""
        inproc = "%.0f" % med(rows, "total_ms") if "total_ms" in rows[0] else "–"
        print("| %s | %.3f [%.3f–%.3f] | %s | %.3f | %.1f | %s | %s |" % (
            name, statistics.median(walls), min(walls), max(walls), inproc, cpu,
            med(rows, "max_rss_kb") / 1024, reads, ratio))
    print("\n¹ For BuildKit, the docker client's alone: dockerd's share is not counted.")
    print("² scan + checksum + stat cache save inside the process, without process start and exit.")
    if samples["buildkit warm"]:
        print("BuildKit `[internal] load build context` vertex, median: %.2f s" %
              med(samples["buildkit warm"], "context_s"))
    print("1-minute load during the run: median %.1f" %
          statistics.median(r["load"] for rows in samples.values() for r in rows))
    print("results: %s" % os.path.relpath(out_path, REPO))


if __name__ == "__main__":
    main()
