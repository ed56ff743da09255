#!/usr/bin/env python3
"""End-to-end build bench: `strata build` beside BuildKit (`docker build`) on the shared
scenarios, in one interleaved run of the shared harness (`../shared/bench/run.py`).

Usage (from anywhere; root, docker running, strata built with
`cargo build --release -p strata-cli`):
    python3 bench/build/run.py [-n 3] [--strata PATH] [--scenarios all] [--measure ...]
                               [-- extra run.py arguments]
    python3 bench/build/run.py --fs ext4|xfs [-n 5] [--n-for biglayer=3,...] [--profile]
                               (root; no dockerd needed: it starts its own, see fsmode.py)

What it does:
  * runs the shared harness with `--tools buildkit,strata`, its work dir in
    bench/build/work/ (git-ignored: scenarios, base image, logs, strata root) and its JSON in
    bench/build/results/run-<UTC>.json (the shared dir is read-only);
  * gives strata the same conditions as BuildKit: the same base (`busybox:local`, imported
    from the harness's rootfs.tar with the PATH and CMD `docker import` gets), RUN steps with
    `--network none` (BuildKit runs with `--network=none`), plain progress, uncompressed
    layers (what docker keeps); a cold build starts from an empty strata root;
  * records each strata build's peak memory: the build command runs under
    `/usr/bin/time -f ...` (one fork+exec more, < 1 ms), which appends `scenario rc maxrss`
    to work/maxrss-<run>.log; the lines are matched to the harness's samples in order and
    stored in the JSON as `max_rss_kb`;
  * prints the table of strata/BuildKit ratios and the goals of issue 5 §7, and writes it
    beside the JSON as table-<run>.md.
"""
import argparse
import datetime
import json
import os
import statistics
import signal
import subprocess
import sys

import fsmode
import phases

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PATH_DEFAULT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MEASURES = ["cold", "warm", "edit", "export", "export-raw"]


def templates(rss_log, build_flags=""):
    """The STRATA_* command templates of the shared harness (see its README)."""
    timed = "/usr/bin/time -a -o %s -f '%%C|%%x|%%M' " % rss_log
    extra = build_flags + " " if build_flags else ""
    return {
        "STRATA_BUILD": timed + "{strata} build --progress plain --network none " + extra +
                                "-t {tag} -f {dockerfile} {context}",
        # Layers are stored uncompressed (like docker's store), so `save` as stored is the
        # uncompressed archive `docker save` writes: export and export-raw are the same.
        "STRATA_SAVE": "{strata} save -o {out} {tag}",
        "STRATA_SAVE_RAW": "{strata} save -o {out} {tag}",
        "STRATA_RESET": "rm -rf {root}",
        "STRATA_SETUP": "{strata} import -c 'ENV PATH=%s' -c 'CMD [\"sh\"]' {base_rootfs} {base}"
                        % PATH_DEFAULT,
    }


def merge_rss(data, rss_log):
    """Adds max_rss_kb to the strata build samples, in order per scenario."""
    per_scen = {}
    if os.path.exists(rss_log):
        with open(rss_log) as f:
            for line in f:
                parts = line.rstrip("\n").rsplit("|", 2)
                if len(parts) != 3 or not parts[2].isdigit():
                    continue  # "Command exited with non-zero status" lines
                cmd, rc, rss = parts
                tag = cmd.split(" -t ", 1)[1].split()[0] if " -t " in cmd else "?"
                scen = tag.split("sbench-", 1)[-1].split(":")[0]
                per_scen.setdefault(scen, []).append((int(rc), int(rss)))
    # Every strata build of the harness is either a recorded sample (cold/warm/edit) or a
    # "prime" build when cold is not measured; both go through STRATA_BUILD in sample order.
    builds = {}
    for s in data["samples"]:
        if s["tool"] == "strata" and s["measure"] in ("cold", "warm", "edit"):
            builds.setdefault(s["scenario"], []).append(s)
    primed = "cold" not in data["meta"]["measures"]
    for scen, samples in builds.items():
        lines = per_scen.get(scen, [])
        if primed:  # each block starts with an unrecorded priming build
            per_block = len(samples) // max(1, data["meta"]["n"]) + 1
            lines = [x for i, x in enumerate(lines) if i % per_block]
        if len(lines) != len(samples):
            print("warning: %s: %d rss lines for %d builds; not merged" % (scen, len(lines),
                                                                           len(samples)),
                  file=sys.stderr)
            continue
        for s, (rc, rss) in zip(samples, lines):
            if rc == s["rc"]:
                s["max_rss_kb"] = rss
    for row in data["summary"]:
        if row["tool"] != "strata":
            continue
        rss = [s["max_rss_kb"] for s in data["samples"]
               if s["tool"] == "strata" and s["scenario"] == row["scenario"]
               and s["measure"] == row["measure"] and s.get("ok") and "max_rss_kb" in s]
        if rss:
            row["max_rss_kb_median"] = statistics.median(rss)
            row["max_rss_kb_max"] = max(rss)



def median_cell(r):
    """A table cell: median [min–max] seconds, or – without samples."""
    return "%.3f [%.3f–%.3f]" % (r["median"], r["min"], r["max"]) if r else "–"


def rss_cell(st):
    """strata's peak RSS cell: median (max) MB."""
    if not st or "max_rss_kb_median" not in st:
        return "–"
    return "%.1f (%.1f)" % (st["max_rss_kb_median"] / 1024, st["max_rss_kb_max"] / 1024)


def load_lines(loads):
    """The table's footnote on the machine's load, if any was recorded."""
    if not loads:
        return []
    return ["", "1-minute load before each sample (2 cores): median %.2f, min %.2f, max %.2f"
            % (statistics.median(loads), min(loads), max(loads))]

def table(data):
    idx = {(r["tool"], r["scenario"], r["measure"]): r for r in data["summary"]}
    scens = list(data["meta"]["scenarios"])
    loads = [s["load1_before"] for s in data["samples"] if s.get("load1_before") is not None]
    if "fs" in data["meta"]:
        return fs_table(data, idx, scens, loads)
    out = ["| scenario | measure | BuildKit s median [min–max] | strata s median [min–max] "
           "| strata/BuildKit wall | BuildKit cpu s | strata cpu s | strata/BuildKit cpu "
           "| strata peak RSS MB (max) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for sc in scens:
        for m in MEASURES:
            bk, st = idx.get(("buildkit", sc, m)), idx.get(("strata", sc, m))
            if not bk and not st:
                continue

            ratio = "%.2f×" % (st["median"] / bk["median"]) if bk and st else "–"
            cpu_ratio = ("%.2f×" % (st["cpu_median"] / bk["cpu_median"])
                         if bk and st and bk["cpu_median"] > 0 else "–")
            rss = rss_cell(st)
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                sc, m, median_cell(bk), median_cell(st), ratio,
                "%.2f" % bk["cpu_median"] if bk else "–",
                "%.2f" % st["cpu_median"] if st else "–", cpu_ratio, rss))
    out += load_lines(loads)
    failed = [s for s in data["samples"] if not s.get("ok")]
    if failed:
        out += ["", "Failed samples: " + ", ".join(
            "%s/%s/%s rep%s" % (s["tool"], s["scenario"], s["measure"], s["rep"]) for s in failed)]
    out += ["", goals(idx, scens)]
    return "\n".join(out)


def fs_table(data, idx, scens, loads):
    """The `--fs` run's table: per scenario and measure both tools' min/median/max, the
    ratio of medians, the 1-minute load before the samples, then strata's phase tables."""
    meta = data["meta"]
    out = ["Fresh %s filesystem per tool and block (loop file in %s), N=%s%s; wall seconds."
           % (meta["fs"], meta["fs_dir"], meta["n"],
              "".join(", %s N=%d" % (k, v) for k, v in sorted(meta["scenario_n"].items())
                      if v != meta["n"])),
           "", "| scenario | measure | BuildKit s median [min–max] | strata s median [min–max] "
           "| strata/BuildKit | BuildKit cpu s | strata cpu s | strata peak RSS MB (max) "
           "| load1 median [min–max] |", "|---|---|---|---|---|---|---|---|---|"]
    for sc in scens:
        for m in MEASURES:
            bk, st = idx.get(("buildkit", sc, m)), idx.get(("strata", sc, m))
            if not bk and not st:
                continue

            ld = [s["load1_before"] for s in data["samples"] if s.get("scenario") == sc
                  and s.get("measure") == m and s.get("load1_before") is not None]
            rss = rss_cell(st)
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                sc, "no-op" if m == "warm" else m, median_cell(bk), median_cell(st),
                "%.2f×" % (st["median"] / bk["median"]) if bk and st else "–",
                "%.2f" % bk["cpu_median"] if bk else "–", "%.2f" % st["cpu_median"] if st else "–",
                rss, "%.2f [%.2f–%.2f]" % (statistics.median(ld), min(ld), max(ld)) if ld else "–"))
    out += load_lines(loads)
    failed = [s for s in data["samples"] if not s.get("ok")]
    if failed:
        out += ["", "Failed: " + ", ".join("%s/%s/%s rep%s" % (s["tool"], s["scenario"],
                                                              s["measure"], s["rep"])
                                          for s in failed)]
    out += ["", "### Where strata's wall time goes (its event log, `--progress rawjson`)",
            "", "Parts add up to the wall time; see bench/build/phases.py for how they are cut."]
    out.append(phases.table(data["samples"], scens))
    for p in data.get("profiles", []):
        out += ["", "### perf: cold %s (%d samples, %.2f s under perf): results/%s"
                % (p["scenario"], p["samples"], p["wall_under_perf"], p["svg"]), "",
                "by process: " + ", ".join("%s %.0f%%" % (c, 100.0 * n / max(1, p["samples"]))
                                           for c, n in p["by_comm"][:6]), "",
                "| frame (self) | % of samples |", "|---|---|"]
        out += ["| `%s` | %.1f |" % (f[:100], pct) for f, _, pct in p["top_self"][:12]]
    return "\n".join(out)


def goals(idx, scens):
    """The goals of issue 5 §7, checked against the medians."""
    lines = ["Goals (issue 5 §7), on medians:"]

    def ratio(sc, m):
        bk, st = idx.get(("buildkit", sc, m)), idx.get(("strata", sc, m))
        return (bk["median"] / st["median"]) if bk and st and st["median"] > 0 else None

    for sc in scens:
        r = ratio(sc, "warm")
        if r is not None:
            lines.append("- no-op rebuild ≥ 10× faster, %s: %.1f× faster: %s"
                         % (sc, r, "met" if r >= 10 else "MISSED"))
    for m in ("cold", "edit"):
        for sc in scens:
            r = ratio(sc, m)
            if r is not None:
                lines.append("- %s no slower than BuildKit, %s: strata/BuildKit %.2f×: %s"
                             % (m, sc, 1 / r, "met" if r >= 1 else "MISSED"))
    rss = [idx[k]["max_rss_kb_max"] for k in idx
           if k[0] == "strata" and k[1] == "bigcontext" and "max_rss_kb_max" in idx[k]]
    if rss:
        mb = max(rss) / 1024
        lines.append("- peak memory < 200 MB on bigcontext: max %.1f MB over cold/warm/edit: %s"
                     % (mb, "met" if mb < 200 else "MISSED"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--strata", default=os.path.join(REPO, "target", "release", "strata"))
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared", "bench"))
    ap.add_argument("--scenarios", default="all")
    ap.add_argument("--measure", default=",".join(MEASURES))
    ap.add_argument("--tag", default="", help="suffix of the result file name")
    ap.add_argument("--build-flags", default="",
                    help="extra `strata build` flags for a side experiment (e.g. \"--jobs 8\")")
    ap.add_argument("--table-only", metavar="JSON", help="print the table of an earlier run")
    ap.add_argument("--fs", choices=["ext4", "xfs"],
                    help="a fresh filesystem of this kind per tool and block (fsmode.py)")
    ap.add_argument("--fs-dir", default="/var/tmp/strata-coldbench",
                    help="--fs: where the loop files go (/dev/shm: tmpfs-backed)")
    ap.add_argument("--n-for", default="",
                    help="--fs: fewer repetitions for some scenarios, e.g. biglayer=3,bigcontext=3")
    ap.add_argument("--profile", action="store_true",
                    help="--fs: one more cold strata build per scenario under perf, flame graphs")
    ap.add_argument("--perf-freq", type=int, default=499)
    ap.add_argument("--base", default="busybox:local")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("extra", nargs="*", help="more arguments for the shared run.py (after --)")
    a = ap.parse_args()
    a.n_for = {k: int(v) for k, v in (x.split("=") for x in a.n_for.split(",") if x)}

    if a.table_only:
        with open(a.table_only) as f:
            print(table(json.load(f)))
        return

    strata = os.path.abspath(a.strata)
    if not os.access(strata, os.X_OK):
        sys.exit("no strata binary at %s (cargo build --release -p strata-cli)" % strata)
    work = os.path.join(HERE, "work")
    results = os.path.join(HERE, "results")
    os.makedirs(work, exist_ok=True)
    os.makedirs(results, exist_ok=True)
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = "run-%s%s" % (run_id, "-" + a.tag if a.tag else "")
    json_path = os.path.join(results, name + ".json")
    rss_log = os.path.join(work, "maxrss-%s.log" % run_id)
    if a.fs:
        sys.exit(run_fs(a, strata, work, results, name, run_id))

    env = dict(os.environ, STRATA=strata, **templates(rss_log, a.build_flags))
    cmd = [sys.executable, os.path.join(a.shared, "run.py"), "-n", str(a.n),
           "--tools", "buildkit,strata", "--scenarios", a.scenarios, "--measure", a.measure,
           "--workdir", work, "--json", json_path] + a.extra
    print("running: %s" % " ".join(cmd), file=sys.stderr)
    rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode
    if not os.path.exists(json_path):
        sys.exit("the harness wrote no results (exit %d)" % rc)
    with open(json_path) as f:
        data = json.load(f)
    merge_rss(data, rss_log)
    data["meta"]["strata_bench"] = {"templates": templates("work/maxrss-%s.log" % run_id,
                                                          a.build_flags),
                                    "strata": strata,
                                    "commit": subprocess.run(
                                        ["git", "-C", REPO, "describe", "--always", "--dirty"],
                                        capture_output=True, text=True).stdout.strip()}
    with open(json_path, "w") as f:
        json.dump(data, f, indent=1)
    text = table(data)
    with open(os.path.join(results, name.replace("run-", "table-") + ".md"), "w") as f:
        f.write(text + "\n\n_raw samples: results/%s.json_\n" % name)
    print(text)
    sys.exit(rc)


def run_fs(a, strata, work, results, name, run_id):
    """`--fs`: the fresh-filesystem run (fsmode.py); writes the JSON and the table."""
    fsmode.check(a)
    name = "run-%s-%s%s" % (run_id, a.fs, "-" + a.tag if a.tag else "")
    # SIGTERM unwinds like Ctrl-C: every mount, loop file and dockerd is undone on the way.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    data = fsmode.Run(a, strata, work, results, run_id).go()
    for row in data["summary"]:
        rss = [s["max_rss_kb"] for s in data["samples"] if s["tool"] == "strata"
               and s.get("scenario") == row["scenario"] and s.get("measure") == row["measure"]
               and s.get("ok") and "max_rss_kb" in s]
        if row["tool"] == "strata" and rss:
            row["max_rss_kb_median"], row["max_rss_kb_max"] = statistics.median(rss), max(rss)
    data["meta"]["strata_bench"] = {
        "strata": strata, "args": sys.argv[1:],
        "commit": subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                                 capture_output=True, text=True).stdout.strip()}
    with open(os.path.join(results, name + ".json"), "w") as f:
        json.dump(data, f, indent=1)
    text = table(data)
    with open(os.path.join(results, name.replace("run-", "table-", 1) + ".md"), "w") as f:
        f.write(text + "\n\n_raw samples: results/%s.json_\n" % name)
    print(text)
    return 0 if all(s.get("ok") for s in data["samples"]) else 1


if __name__ == "__main__":
    main()
