#!/usr/bin/env python3
"""Scaling curves (issue 15 §3): strata and BuildKit as the work grows, in the same run.

Usage (root, the system dockerd running, strata built with
`cargo build --release -p strata-cli`):
    python3 bench/scaling/run.py [-n 3] [--curves context,length,stages,concurrency]
                                 [--sizes context=1000,10000] [--strata PATH]
    python3 bench/scaling/run.py --report bench/scaling/results/scaling-<run>.json

Curves (each point N times, interleaved repetition -> size -> tool, medians with min/max):
  context      `COPY . /src` of 1k, 10k, 100k files (~1 KB each): cold, no-op, one-file
               edit, and strata's peak RSS
  length       Dockerfiles of 10, 100, 1000 cheap steps (90% ENV/LABEL, 5% small RUN,
               5% COPY of a small file): cold, no-op
  stages       graphs of 10, 100, 1000 stages without RUN (a binary tree of stages, each with
               an ENV and a COPY --from of a small file from each child): cold, no-op, and
               strata's frontend alone (`strata check`: parse, checks, lowering of every stage)
  concurrency  1, 2, 4, 8 builds of different projects at once (one strata store; one
               dockerd): wall time of the batch, cold and no-op

Everything a build is timed with is the shared harness's (`../shared/bench/run.py`: `timed`,
the BuildKit and Strata tools, the base image) and bench/build's strata templates (the build
under `/usr/bin/time` for its peak RSS); strata's builds use `--progress rawjson` here, whose
event times split the build into front (start to first step event: parse, lower, open the
store), solve (first to last step event) and tail (last event to exit: commit, tag).

Results: bench/scaling/results/scaling-<UTC>.json (meta, samples, summary, exponents), one CSV
and one PNG per curve, and table-<UTC>.md (the tables and fitted exponents). The plots need
matplotlib: Debian's python3-matplotlib is installed with apt-get if /usr/bin/python3 lacks
it, and the plots are drawn by /usr/bin/python3.
"""
import argparse
import csv
import datetime
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SYSTEM_PYTHON = "/usr/bin/python3"
GEN_VERSION = "1"  # bump when a generator below changes: the work dir is regenerated


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def modules(shared):
    """The shared harness (with its scenario generator) and bench/build's strata templates."""
    harness = _load("shared_harness", os.path.join(shared, "run.py"))
    # bench/build/run.py imports its sibling modules (fsmode, phases) by name.
    build_dir = os.path.join(REPO, "bench", "build")
    if build_dir not in sys.path:
        sys.path.insert(0, build_dir)
    build_bench = _load("build_bench", os.path.join(build_dir, "run.py"))
    return harness, build_bench


# ---------------------------------------------------------------------------
# scenarios: each generator fills d/ctx and writes d/Dockerfile, returns its metadata
def gen_context(gen, d, rng, base, n):
    ctx = os.path.join(d, "ctx")
    total = 0
    for k in range(n):
        size = rng.randint(256, 1792)  # mean 1 KiB
        gen._write(os.path.join(ctx, "d%04d" % (k // 100), "f%02d.bin" % (k % 100)),
                   rng.randbytes(size))
        total += size
    gen._write(os.path.join(d, "Dockerfile"), "FROM %s\nCOPY . /src\n" % base)
    return {"description": "COPY . /src of %d files (%d bytes)" % (n, total),
            "edit_file": "d0000/f00.bin", "files": n, "bytes": total}


def gen_length(gen, d, rng, base, n):
    df = ["FROM %s" % base]
    for i in range(n):
        if i % 20 == 9:
            df.append("RUN echo %d > /r%d" % (i, i))
        elif i % 20 == 19:
            gen._write(os.path.join(d, "ctx", "files", "f%d.txt" % i), gen._text_file(rng, 3))
            df.append("COPY files/f%d.txt /c/" % i)
        elif i % 2 == 0:
            df.append("ENV V%d=value%d" % (i, i))
        else:
            df.append("LABEL l%d=value%d" % (i, i))
    gen._write(os.path.join(d, "ctx", "README.txt"), "length: COPY sources under files/\n")
    gen._write(os.path.join(d, "Dockerfile"), "\n".join(df) + "\n")
    return {"description": "%d steps after FROM: ENV/LABEL alternating, every 20th a RUN echo "
                           "(i%%20 = 9) or a COPY of a small file (i%%20 = 19)" % n,
            "edit_file": None, "steps": n}


def gen_stages(gen, d, rng, base, n):
    # Stage i copies a small file from each of its children 2i+1 and 2i+2: every stage is
    # reachable from s0, the target, and no image has more than three layers over the base.
    # Children come first in the file (a COPY --from names an earlier stage).
    df = []
    for i in reversed(range(n)):
        df.append("FROM %s AS s%d" % (base, i))
        df.append("ENV STAGE=%d" % i)
        for c in (2 * i + 1, 2 * i + 2):
            if c < n:
                df.append("COPY --from=s%d /etc/hostname /from/s%d" % (c, c))
        df.append("")
    gen._write(os.path.join(d, "ctx", "README.txt"), "stages: no context\n")
    gen._write(os.path.join(d, "Dockerfile"), "\n".join(df))
    return {"description": "%d stages, a binary tree (stage i: ENV, COPY --from of each child); "
                           "no RUN" % n, "edit_file": None, "stages": n}


def gen_project(gen, d, rng, base, i):
    for k in range(200):
        gen._write(os.path.join(d, "ctx", "src", "m%d" % (k // 20), "f%03d.txt" % k),
                   "project %d\n" % i + gen._text_file(rng, rng.randint(5, 30)))
    df = ["FROM %s" % base,
          "ENV PROJECT=%d" % i,
          "WORKDIR /app",
          "COPY . /app/",
          "RUN find /app -type f | sort | xargs cat | sha256sum > /app.sum && cat /app.sum"]
    gen._write(os.path.join(d, "Dockerfile"), "\n".join(df) + "\n")
    return {"description": "project %d: COPY of 200 text files, RUN hashing them" % i,
            "edit_file": None, "files": 200}


CURVES = {
    "context": {"sizes": [1000, 10000, 100000], "measures": ["cold", "warm", "edit"],
                "gen": gen_context, "x": "files in the context"},
    "length": {"sizes": [10, 100, 1000], "measures": ["cold", "warm"],
               "gen": gen_length, "x": "Dockerfile steps"},
    "stages": {"sizes": [10, 100, 1000], "measures": ["cold", "warm", "check"],
               "gen": gen_stages, "x": "stages (no RUN)"},
    "concurrency": {"sizes": [1, 2, 4, 8], "measures": ["cold", "warm"],
                    "gen": gen_project, "x": "concurrent builds of different projects"},
}
MEASURE_NAMES = {"cold": "cold", "warm": "no-op", "edit": "one-file edit",
                 "check": "frontend only (strata check)"}


def scenario(gen, work, base, seed, curve, size):
    """Generates (once) the scenario of one point; the metadata carries its paths."""
    name = "scale-%s-%d" % (curve, size)
    d = os.path.join(work, "scenarios", name)
    meta_path = os.path.join(d, "scenario.json")
    stamp = "%s|%s|%s|%s" % (GEN_VERSION, base, seed, size)
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("stamp") == stamp:
            return meta
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "ctx"))
    t0 = time.perf_counter()
    meta = CURVES[curve]["gen"](gen, d, gen._rng(seed, name), base, size)
    meta.update({"name": name, "stamp": stamp, "dockerfile_path": os.path.join(d, "Dockerfile"),
                 "context_path": os.path.join(d, "ctx")})
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    log("generated %s in %.1f s: %s" % (name, time.perf_counter() - t0, meta["description"]))
    return meta


def log(msg):
    print("[scaling %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# measuring
def last_rss(rss_log, count=1):
    """Peak RSS (KiB) of the last `count` strata builds, from `/usr/bin/time`'s lines."""
    try:
        with open(rss_log) as f:
            lines = [ln.rstrip("\n").rsplit("|", 2) for ln in f]
    except OSError:
        return None
    vals = [int(p[2]) for p in lines if len(p) == 3 and p[2].isdigit()][-count:]
    return max(vals) if vals else None


def phases(lines, spawned, wall):
    """strata's phases from its rawjson events (absolute times) and the spawn time."""
    times, gaps, finished = [], [], None
    for _, line in lines:
        if not line.startswith("{"):
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if not (isinstance(ev, dict) and "node" in ev and isinstance(ev.get("time"), (int, float))):
            continue
        times.append(ev["time"])
        # The scheduler's dispatch latency: a step finishing to the next one starting.
        if ev.get("event") == "finished":
            finished = ev["time"]
        elif ev.get("event") == "started" and finished is not None:
            gaps.append(ev["time"] - finished)
            finished = None
    if not times:
        return {}
    first, last = min(times) - spawned, max(times) - spawned
    out = {"front_s": round(first, 4), "solve_s": round(last - first, 4),
           "tail_s": round(wall - last, 4), "step_events": len(times)}
    if gaps:
        out["dispatch_us"] = round(statistics.median(gaps) * 1e6, 1)
    return out


class Runner:
    def __init__(self, harness, tools, logs, rss_log, work):
        self.h, self.tools, self.logs, self.rss_log, self.work = harness, tools, logs, rss_log, work
        self.samples = []

    def _sample(self, tool, curve, size, measure, rep, wall, rc, cpu, load1, extra):
        smp = {"curve": curve, "tool": tool.name, "size": size, "measure": measure, "rep": rep,
               "wall": round(wall, 4), "rc": rc, "ok": rc == 0, "cpu": round(cpu, 3),
               "load1_before": round(load1, 2)}
        smp.update(extra)
        self.samples.append(smp)
        log("%-8s %-11s %6d %-5s rep%d %8.3fs rc=%d load1=%.2f%s" % (
            tool.name, curve, size, measure, rep, wall, rc, load1,
            "".join(" %s=%s" % kv for kv in extra.items() if kv[0] != "log")))
        return smp

    def one(self, tool, s, curve, size, measure, rep, cmd=None):
        lp = os.path.join(self.logs, "%s.%s.%s.%d.log" % (tool.name, s["name"], measure, rep))
        iid = os.path.join(self.work, "iid")
        load1 = os.getloadavg()[0]
        spawned = time.time()
        res = self.h.timed(cmd or tool.build_cmd(s, iid), tool.env, lp,
                           daemon_pids=tool.daemon_pids)
        if cmd is None:
            tool.after_build(iid)
        cpu = res["cpu_client"] + (res["cpu_daemon"] or 0)
        extra = {"log": os.path.relpath(lp, HERE)}
        if tool.name == "strata" and cmd is None:
            extra["max_rss_kb"] = last_rss(self.rss_log)
            extra.update(phases(res["lines"], spawned, res["wall"]))
        return self._sample(tool, curve, size, measure, rep, res["wall"], res["rc"], cpu, load1,
                            extra)

    def batch(self, tool, projects, curve, measure, rep):
        """All projects' builds started at once; the batch's wall time is the last one's end."""
        procs, ends = [], {}
        load1 = os.getloadavg()[0]
        c0, d0 = self.h._children_cpu(), self.h._proc_cpu(tool.daemon_pids)
        t0 = time.perf_counter()
        for s in projects:
            lp = os.path.join(self.logs, "%s.%s.%s.%d.k%d.log" % (tool.name, s["name"], measure,
                                                                   rep, len(projects)))
            lf = open(lp, "w")
            iid = os.path.join(self.work, "iid-" + s["name"])
            p = subprocess.Popen(tool.build_cmd(s, iid), env=tool.env, stdout=lf,
                                 stderr=subprocess.STDOUT)
            procs.append((s, p, lf, iid))

        def wait(s, p):
            p.wait()
            ends[s["name"]] = time.perf_counter() - t0

        threads = [threading.Thread(target=wait, args=(s, p)) for s, p, _, _ in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        cpu = (self.h._children_cpu() - c0) + (
            (self.h._proc_cpu(tool.daemon_pids) - d0) if tool.daemon_pids else 0)
        rc = 0
        for s, p, lf, iid in procs:
            lf.close()
            tool.after_build(iid)
            rc = rc or p.returncode
        extra = {"build_walls": [round(ends[s["name"]], 4) for s, _, _, _ in procs]}
        if tool.name == "strata":
            extra["max_rss_kb"] = last_rss(self.rss_log, len(projects))
        return self._sample(tool, curve, len(projects), measure, rep, wall, rc, cpu, load1, extra)


def reset_all(tool, names):
    """Drops every cache of the tool and the images of `names`."""
    if tool.name == "buildkit":
        for n in names[1:]:
            tool._rmi(n)
    tool.reset(names[0])


def edited(s, tool, rep):
    """Appends a unique line to the scenario's edit file; returns the function restoring it."""
    path = os.path.join(s["context_path"], s["edit_file"])
    with open(path, "rb") as f:
        orig = f.read()
    with open(path, "wb") as f:
        f.write(orig + ("\n// edit %s-%d-%d\n" % (tool.name, rep, time.time_ns())).encode())

    def restore():
        with open(path, "wb") as f:
            f.write(orig)
    return restore


def run_curve(runner, tools, curve, sizes, n, scen_of, strata_bin):
    measures = CURVES[curve]["measures"]
    for rep in range(n):
        for size in sizes:
            for tool in tools:
                try:
                    if curve == "concurrency":
                        projects = [scen_of(curve, i) for i in range(size)]
                        reset_all(tool, [p["name"] for p in projects])
                        for m in measures:
                            if runner.batch(tool, projects, curve, m, rep)["rc"]:
                                break
                        continue
                    s = scen_of(curve, size)
                    reset_all(tool, [s["name"]])
                    for m in measures:
                        if m == "check":
                            if tool.name == "strata":
                                runner.one(tool, s, curve, size, m, rep,
                                           cmd=[strata_bin, "check", s["dockerfile_path"]])
                            continue
                        restore = edited(s, tool, rep) if m == "edit" else None
                        try:
                            smp = runner.one(tool, s, curve, size, m, rep)
                        finally:
                            if restore:
                                restore()
                        if smp["rc"]:
                            break
                except Exception as e:  # noqa: BLE001 (the shared dockerd may be restarted)
                    log("%s %s %d rep%d: aborted: %s" % (tool.name, curve, size, rep, e))
                    runner.samples.append({"curve": curve, "tool": tool.name, "size": size,
                                           "measure": "block", "rep": rep, "ok": False,
                                           "error": str(e)[:2000]})


# ---------------------------------------------------------------------------
# summary, exponents, files
def summarize(samples):
    groups = {}
    for s in samples:
        if s.get("ok"):
            groups.setdefault((s["curve"], s["tool"], s["measure"], s["size"]), []).append(s)
    rows = []
    for (curve, tool, measure, size), ss in sorted(groups.items()):
        w = [s["wall"] for s in ss]
        row = {"curve": curve, "tool": tool, "measure": measure, "size": size, "n": len(w),
               "median": statistics.median(w), "min": min(w), "max": max(w),
               "cpu_median": statistics.median(s["cpu"] for s in ss)}
        rss = [s["max_rss_kb"] for s in ss if s.get("max_rss_kb")]
        if rss:
            row["rss_kb_median"], row["rss_kb_max"] = statistics.median(rss), max(rss)
        for k in ("front_s", "solve_s", "tail_s", "dispatch_us"):
            v = [s[k] for s in ss if k in s]
            if v:
                row[k + "_median"] = statistics.median(v)
        rows.append(row)
    return rows


def slope(points):
    """Least-squares slope of log(y) over log(x)."""
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


def exponents(summary):
    """Per curve, tool and measure: the fitted exponent over all sizes and the last segment's."""
    series = {}
    for r in summary:
        series.setdefault((r["curve"], r["tool"], r["measure"]), []).append((r["size"], r["median"]))
        if "rss_kb_median" in r:
            series.setdefault((r["curve"], r["tool"], r["measure"] + " RSS"), []).append(
                (r["size"], r["rss_kb_median"]))
        for k in ("front_s", "solve_s"):
            if k + "_median" in r:
                series.setdefault((r["curve"], r["tool"], "%s %s" % (r["measure"], k[:-2])),
                                  []).append((r["size"], r[k + "_median"]))
    out = []
    for (curve, tool, measure), pts in sorted(series.items()):
        pts.sort()
        out.append({"curve": curve, "tool": tool, "measure": measure,
                    "sizes": [p[0] for p in pts], "fit": slope(pts),
                    "last_segment": slope(pts[-2:]) if len(pts) >= 2 else None})
    return out


def fmt_s(r):
    return "%.3f [%.3f–%.3f]" % (r["median"], r["min"], r["max"])


def tables(data):
    idx = {(r["curve"], r["tool"], r["measure"], r["size"]): r for r in data["summary"]}
    out = []
    for curve in data["meta"]["curves"]:
        sizes = sorted({r["size"] for r in data["summary"] if r["curve"] == curve})
        if not sizes:
            continue
        out += ["### %s (x: %s)" % (curve, CURVES[curve]["x"]), "",
                "| %s | measure | BuildKit s median [min–max] | strata s median [min–max] "
                "| strata/BuildKit | strata peak RSS MB (max) | strata front / solve / tail s |"
                % "size", "|---|---|---|---|---|---|---|"]
        for size in sizes:
            for m in CURVES[curve]["measures"]:
                bk, st = idx.get((curve, "buildkit", m, size)), idx.get((curve, "strata", m, size))
                if not bk and not st:
                    continue
                ratio = "%.2f×" % (st["median"] / bk["median"]) if bk and st else "–"
                rss = ("%.1f (%.1f)" % (st["rss_kb_median"] / 1024, st["rss_kb_max"] / 1024)
                       if st and "rss_kb_median" in st else "–")
                ph = ("%.3f / %.3f / %.3f" % (st["front_s_median"], st["solve_s_median"],
                                              st["tail_s_median"])
                      if st and "front_s_median" in st else "–")
                out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                    size, MEASURE_NAMES[m], fmt_s(bk) if bk else "–", fmt_s(st) if st else "–",
                    ratio, rss, ph))
        out.append("")
    out += ["### Growth exponents (slope of log median over log size; 1 = linear)", "",
            "| curve | tool | measure | sizes | fit over all | last segment |",
            "|---|---|---|---|---|---|"]
    for e in data["exponents"]:
        if e["fit"] is None:
            continue
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            e["curve"], e["tool"], e["measure"], ", ".join(str(s) for s in e["sizes"]),
            "%.2f" % e["fit"] if e["fit"] is not None else "–",
            "%.2f" % e["last_segment"] if e["last_segment"] is not None else "–"))
    loads = [s["load1_before"] for s in data["samples"] if s.get("load1_before") is not None]
    if loads:
        out += ["", "1-minute load before each sample (2 cores): median %.2f, min %.2f, max %.2f"
                % (statistics.median(loads), min(loads), max(loads))]
    failed = [s for s in data["samples"] if not s.get("ok")]
    if failed:
        out += ["", "Failed samples: " + ", ".join(
            "%s/%s/%s/%s rep%s" % (s["tool"], s["curve"], s["size"], s["measure"], s["rep"])
            for s in failed)]
    return "\n".join(out)


def write_csv(data, path, curve):
    cols = ["curve", "tool", "size", "measure", "rep", "wall", "rc", "cpu", "load1_before",
            "max_rss_kb", "front_s", "solve_s", "tail_s", "step_events", "dispatch_us",
            "build_walls"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        for s in data["samples"]:
            if s["curve"] == curve and s["measure"] != "block":
                w.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else v)
                            for k, v in s.items()})


def plot(data, path, curve):
    """One PNG per curve: log-log medians with min–max bars per measure, RSS for strata."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in data["summary"] if r["curve"] == curve]
    measures = [m for m in CURVES[curve]["measures"] if any(r["measure"] == m for r in rows)]
    has_rss = any("rss_kb_median" in r for r in rows)
    panels = len(measures) + (1 if has_rss else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4), squeeze=False)
    exps = {(e["tool"], e["measure"]): e["fit"] for e in data["exponents"] if e["curve"] == curve}
    for ax, m in zip(axes[0], measures):
        for tool, style in (("buildkit", "s-"), ("strata", "o-")):
            pts = sorted((r["size"], r) for r in rows if r["tool"] == tool and r["measure"] == m)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ys = [p[1]["median"] for p in pts]
            err = [[p[1]["median"] - p[1]["min"] for p in pts],
                   [p[1]["max"] - p[1]["median"] for p in pts]]
            k = exps.get((tool, m))
            ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=3,
                        label="%s (exp %.2f)" % (tool, k) if k is not None else tool)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title("%s: %s" % (curve, MEASURE_NAMES[m]))
        ax.set_xlabel(CURVES[curve]["x"])
        ax.set_ylabel("wall s (median, min–max)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if has_rss:
        ax = axes[0][-1]
        for m in measures:
            pts = sorted((r["size"], r["rss_kb_median"] / 1024) for r in rows
                         if r["tool"] == "strata" and r["measure"] == m and "rss_kb_median" in r)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=MEASURE_NAMES[m])
        ax.axhline(50, color="red", ls="--", lw=1, label="goal 50 MB")
        ax.set_xscale("log")
        ax.set_title("strata peak RSS")
        ax.set_xlabel(CURVES[curve]["x"])
        ax.set_ylabel("MB")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("%s, %s, N=%d, load %s" % (curve, data["meta"]["date_utc"][:10],
                                            data["meta"]["n"], data["meta"]["load_note"]),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(json_path):
    """Writes the CSVs, the PNGs and the table of a finished run; returns the table."""
    with open(json_path) as f:
        data = json.load(f)
    data["summary"] = summarize(data["samples"])
    data["exponents"] = exponents(data["summary"])
    loads = [s["load1_before"] for s in data["samples"] if s.get("load1_before") is not None]
    data["meta"]["load_note"] = ("%.1f (%.1f–%.1f)" % (statistics.median(loads), min(loads),
                                                       max(loads))) if loads else "?"
    with open(json_path, "w") as f:
        json.dump(data, f, indent=1)
    stem = json_path[:-len(".json")]
    run = os.path.basename(stem)[len("scaling-"):]
    for curve in data["meta"]["curves"]:
        write_csv(data, "%s-%s.csv" % (os.path.join(os.path.dirname(stem), curve), run), curve)
    try:
        import matplotlib  # noqa: F401
        plot_all(data, json_path)
    except ImportError:
        ensure_matplotlib()
        if sys.executable != SYSTEM_PYTHON:
            subprocess.run([SYSTEM_PYTHON, os.path.abspath(__file__), "--plot-only", json_path],
                           check=False)
        else:
            log("no matplotlib (apt-get install python3-matplotlib); run --report again")
    text = tables(data)
    with open(os.path.join(os.path.dirname(stem), "table-%s.md" % run), "w") as f:
        f.write(text + "\n\n_raw samples: results/%s.json_\n" % os.path.basename(stem))
    return text


def ensure_matplotlib():
    ok = subprocess.run([SYSTEM_PYTHON, "-c", "import matplotlib"],
                        capture_output=True).returncode == 0
    if not ok:
        log("installing python3-matplotlib (apt-get) for the plots")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        "python3-matplotlib"], env=dict(os.environ,
                                                        DEBIAN_FRONTEND="noninteractive"),
                       stdout=subprocess.DEVNULL, check=False)


def plot_all(data, json_path):
    """One PNG per curve of the run, beside its JSON."""
    stem = json_path[:-len(".json")]
    run = os.path.basename(stem)[len("scaling-"):]
    for curve in data["meta"]["curves"]:
        if any(r["curve"] == curve for r in data["summary"]):
            plot(data, "%s-%s.png" % (os.path.join(os.path.dirname(stem), curve), run), curve)


# ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--curves", default="context,length,stages,concurrency")
    ap.add_argument("--sizes", action="append", default=[],
                    help="CURVE=a,b,c: other sizes for one curve (may be repeated)")
    ap.add_argument("--tools", default="buildkit,strata")
    ap.add_argument("--strata", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"), "release", "strata"))
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared", "bench"))
    ap.add_argument("--base", default="busybox:local")
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--tag", default="", help="suffix of the result file names")
    ap.add_argument("--report", metavar="JSON", help="redo the tables and plots of a run")
    ap.add_argument("--plot-only", metavar="JSON", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.plot_only:
        with open(a.plot_only) as f:
            return plot_all(json.load(f), a.plot_only)
    if a.report:
        print(report(a.report))
        return

    curves = [c for c in a.curves.split(",") if c]
    sizes = {c: list(CURVES[c]["sizes"]) for c in curves}
    for spec in a.sizes:
        c, _, v = spec.partition("=")
        if c not in CURVES:
            ap.error("unknown curve %s" % c)
        sizes[c] = [int(x) for x in v.split(",") if x]
    strata = os.path.abspath(a.strata)
    if "strata" in a.tools and not os.access(strata, os.X_OK):
        sys.exit("no strata binary at %s (cargo build --release -p strata-cli)" % strata)

    harness, build_bench = modules(os.path.abspath(a.shared))
    work = os.path.join(HERE, "work")
    results = os.path.join(HERE, "results")
    os.makedirs(results, exist_ok=True)
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = "scaling-%s%s" % (run_id, "-" + a.tag if a.tag else "")
    logs = os.path.join(work, "logs", run_id)
    os.makedirs(logs, exist_ok=True)
    rss_log = os.path.join(work, "maxrss-%s.log" % run_id)

    # bench/build's strata commands (same base, flags, /usr/bin/time), with rawjson progress
    # for the phase times.
    tpl = build_bench.templates(rss_log)
    tpl["STRATA_BUILD"] = tpl["STRATA_BUILD"].replace("--progress plain", "--progress rawjson")
    os.environ.update(tpl)
    os.environ["STRATA"] = strata
    args = types.SimpleNamespace(strata=strata)
    base = harness.Base(work, a.base)
    tools = []
    for t in a.tools.split(","):
        tool = harness.TOOL_CLASSES[t](args, work, base)
        ok, why = tool.available()
        if not ok:
            sys.exit("%s: %s" % (t, why))
        tools.append(tool)
    tools.sort(key=lambda x: harness.ALL_TOOLS.index(x.name))  # buildkit exports the base first
    for tool in tools:
        tool.setup()

    gen = harness.gen
    cache = {}

    def scen_of(curve, size):
        if (curve, size) not in cache:
            cache[(curve, size)] = scenario(gen, work, a.base, a.seed, curve, size)
        return cache[(curve, size)]

    meta = {"run_id": run_id, "date_utc": datetime.datetime.now(datetime.timezone.utc)
            .isoformat(), "n": a.n, "curves": curves, "sizes": sizes,
            "machine": harness.machine_info(), "tools": {t.name: t.version for t in tools},
            "templates": build_bench.templates("work/maxrss-%s.log" % run_id),
            "strata_progress": "rawjson", "seed": a.seed, "base": a.base,
            "commit": subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                                     capture_output=True, text=True).stdout.strip(),
            "loadavg_start": os.getloadavg()}
    # every scenario first, so that generating them is not inside a timed block
    for c in curves:
        for sz in sizes[c]:
            if c == "concurrency":
                for i in range(sz):
                    scen_of(c, i)
            else:
                scen_of(c, sz)
    runner = Runner(harness, tools, logs, rss_log, work)
    json_path = os.path.join(results, name + ".json")
    try:
        for c in curves:
            log("curve %s, sizes %s, N=%d" % (c, sizes[c], a.n))
            run_curve(runner, tools, c, sizes[c], a.n, scen_of, strata)
    except KeyboardInterrupt:
        log("interrupted; writing partial results")
    finally:
        for tool in tools:
            try:
                names = [s["name"] for s in cache.values()]
                if tool.name == "buildkit" and names:
                    tool.final_cleanup(names)
            except Exception as e:  # noqa: BLE001
                log("cleanup %s failed: %s" % (tool.name, e))
        meta["loadavg_end"] = os.getloadavg()
        with open(json_path, "w") as f:
            json.dump({"meta": meta, "samples": runner.samples}, f, indent=1)
    print(report(json_path))


if __name__ == "__main__":
    main()
