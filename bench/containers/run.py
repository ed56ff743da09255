#!/usr/bin/env python3
"""Container commands beside docker (issue 14 §6), both tools in one run.

Usage (root, the system dockerd running, strata built with
`cargo build --release -p strata-cli`):
    python3 bench/containers/run.py [-n 10] [--strata PATH] [--rows run,cycle,exec,ps,commit,logs]
    python3 bench/containers/run.py --report bench/containers/results/containers-<run>.json

Rows (each timed N times, interleaved repetition -> row -> tool, the tool order swapped on every
other repetition; wall time of the client process(es), medians with min/max):
  run      `run --rm IMAGE true`
  cycle    `run -d IMAGE sleep 1000`, `stop -t 0 ID`, `rm ID` (one sample = the three commands)
  exec     `exec CONTAINER true` in a running `sleep 1000` container
  ps       `ps` with 50 running containers of this run (stdout to /dev/null)
  commit   `commit CONTAINER REPO:TAG` of an exited container whose one change is a 100 MB file
           of random bytes (the image is removed after each sample, untimed); strata's default
           layer compression (gzip), and strata again with `--compression zstd`
  logs     `logs CONTAINER > /dev/null` of an exited container that wrote 100 MB to stdout
           (1 M lines of 100 bytes)

Both tools run `--network none` (docker's default bridge is unusable on this VM; strata's
`--network none` is the same isolation), the same image: the shared harness's busybox rootfs
(`../shared/bench/run.py`, `make_rootfs`) given to `docker import` and `strata import`.
`stop -t 0` for both (SIGTERM then SIGKILL at once: busybox's `sleep` as PID 1 ignores SIGTERM,
so docker's default 10 s wait would be the whole figure).

strata's root is a temporary directory; every container and image either tool made is removed
on every exit path (docker's are labelled `cbench=<run id>`). Results:
bench/containers/results/containers-<UTC>.json (meta, every sample with the 1-minute load
average at its start, summary) and table-<UTC>.md.
"""
import argparse
import datetime
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DOCKER = "/usr/bin/docker"
PATH_DEFAULT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MB100 = 100 * 1000 * 1000
LINE = "x" * 99  # + "\n": 100-byte lines
ROWS = ["run", "cycle", "exec", "ps", "commit", "logs"]
TITLES = {
    "run": "`run --rm IMAGE true`",
    "cycle": "`run -d IMAGE sleep 1000` + `stop -t 0` + `rm`",
    "exec": "`exec CONTAINER true`",
    "ps": "`ps` with 50 running containers",
    "commit": "`commit` of a 100 MB change",
    "commit-zstd": "`commit` of a 100 MB change, strata `--compression zstd`",
    "logs": "`logs CONTAINER > /dev/null`, 100 MB of output",
}
GOALS = {"run": 10.0, "exec": 10.0, "commit": 2.0}


def log(msg):
    print("[cbench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def load_shared(shared):
    spec = importlib.util.spec_from_file_location("shared_harness", os.path.join(shared, "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Tool:
    """One container CLI: its argv prefix, environment, and what it made (for the cleanup)."""

    def __init__(self, name, argv, env, run_flags):
        self.name, self.argv, self.env, self.run_flags = name, argv, env, run_flags
        self.containers = []
        self.images = []

    def cmd(self, *args):
        return self.argv + list(args)

    def out(self, *args):
        """An untimed command's stdout; raises with its stderr on failure."""
        r = subprocess.run(self.cmd(*args), env=self.env, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("%s %s failed (%d): %s" % (self.name, " ".join(args), r.returncode,
                                                          r.stderr.strip()[-500:]))
        return r.stdout.strip()

    def run_d(self, image, *argv):
        cid = self.out("run", "-d", *self.run_flags, image, *argv)
        self.containers.append(cid)
        return cid

    def timed(self, *args, stdout=subprocess.DEVNULL):
        """Wall seconds of one command (and its stdout when asked for)."""
        t0 = time.perf_counter()
        r = subprocess.run(self.cmd(*args), env=self.env, stdout=stdout, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        if r.returncode:
            raise RuntimeError("%s %s failed (%d): %s" % (self.name, " ".join(args), r.returncode,
                                                          r.stderr.decode(errors="replace")[-500:]))
        return wall, (r.stdout.decode().strip() if stdout == subprocess.PIPE else None)

    def cleanup(self):
        if self.containers:
            subprocess.run(self.cmd("rm", "-f", *self.containers), env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.images:
            subprocess.run(self.cmd("rmi", "-f", *self.images), env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.containers, self.images = [], []


def fixtures(tool, image):
    """The containers the exec, ps, commit and logs rows use, made untimed before the loop."""
    sleepers = [tool.run_d(image, "sleep", "1000") for _ in range(50)]
    big = tool.out("create", *tool.run_flags, image, "sh", "-c",
                   "head -c %d /dev/urandom > /big" % MB100)
    tool.containers.append(big)
    chatty = tool.out("create", *tool.run_flags, image, "sh", "-c",
                      "yes %s | head -c %d" % (LINE, MB100))
    tool.containers.append(chatty)
    for c in (big, chatty):
        tool.out("start", c)
    for c in (big, chatty):
        code = tool.out("wait", c)
        if code.strip() != "0":
            raise RuntimeError("%s: fixture container %s exited %s" % (tool.name, c, code))
    return {"exec": sleepers[0], "big": big, "chatty": chatty}


def sample(tool, row, image, fx, tag):
    """Wall seconds of one sample of a row."""
    if row == "run":
        return tool.timed("run", "--rm", *tool.run_flags, image, "true")[0]
    if row == "cycle":
        t1, cid = tool.timed("run", "-d", *tool.run_flags, image, "sleep", "1000",
                             stdout=subprocess.PIPE)
        tool.containers.append(cid)
        t2, _ = tool.timed("stop", "-t", "0", cid)
        t3, _ = tool.timed("rm", cid)
        tool.containers.remove(cid)
        return t1 + t2 + t3
    if row == "exec":
        return tool.timed("exec", fx["exec"], "true")[0]
    if row == "ps":
        return tool.timed("ps")[0]
    if row in ("commit", "commit-zstd"):
        extra = ["--compression", "zstd"] if row == "commit-zstd" else []
        tool.images.append(tag)
        wall = tool.timed("commit", *extra, fx["big"], tag)[0]
        tool.out("rmi", tag)
        tool.images.remove(tag)
        return wall
    if row == "logs":
        return tool.timed("logs", fx["chatty"])[0]
    raise ValueError(row)


def summarize(samples):
    out = {}
    for s in samples:
        out.setdefault(s["row"], {}).setdefault(s["tool"], []).append(s)
    summary = {}
    for row, by_tool in out.items():
        summary[row] = {}
        for tool, ss in by_tool.items():
            walls = [s["wall"] for s in ss]
            loads = [s["load1"] for s in ss]
            summary[row][tool] = {"n": len(walls), "median": statistics.median(walls),
                                  "min": min(walls), "max": max(walls),
                                  "load1_median": statistics.median(loads),
                                  "load1_min": min(loads), "load1_max": max(loads)}
    return summary


def fmt(sec):
    return "%.1f ms" % (sec * 1000) if sec < 1 else "%.2f s" % sec


def table(data):
    summary, meta = data["summary"], data["meta"]
    lines = ["| row | docker median [min–max] | strata median [min–max] | strata/docker | goal |",
             "|---|---|---|---|---|"]
    for row in [r for r in list(TITLES) if r in summary]:
        d, s = summary[row].get("docker"), summary[row].get("strata")
        if row == "commit-zstd":
            d = summary.get("commit", {}).get("docker")
        cell = lambda x: "%s [%s–%s]" % (fmt(x["median"]), fmt(x["min"]), fmt(x["max"])) if x else "—"
        ratio = s["median"] / d["median"] if d and s else None
        goal = ""
        if row in GOALS and ratio is not None:
            goal = "≥%g× faster: %s (%.1f×)" % (GOALS[row], "met" if 1 / ratio >= GOALS[row] else "not met",
                                                 1 / ratio)
        lines.append("| %s | %s | %s | %s | %s |" % (TITLES[row], cell(d), cell(s),
                                                    "%.3f" % ratio if ratio else "—", goal))
    loads = [x for row in summary.values() for t in row.values() for x in (t["load1_min"], t["load1_max"])]
    meds = sorted(t["load1_median"] for row in summary.values() for t in row.values())
    lines.append("")
    lines.append("N = %d per cell; 1-minute load average at the samples' starts: median of the rows' "
                 "medians %.1f, range %.1f–%.1f (%d cores). Run %s, strata %s, %s." % (
                     meta["n"], statistics.median(meds), min(loads), max(loads), meta["machine"]["cpus"],
                     meta["run_id"], meta["commit"], meta["docker"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--strata", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target"), "release", "strata"))
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared", "bench"))
    ap.add_argument("--report", metavar="JSON", help="print the table of a run again")
    a = ap.parse_args()
    if a.report:
        with open(a.report) as f:
            print(table(json.load(f)))
        return
    rows = [r for r in a.rows.split(",") if r]
    for r in rows:
        if r not in ROWS:
            ap.error("unknown row %s (rows: %s)" % (r, ",".join(ROWS)))
    if "commit" in rows:
        rows.insert(rows.index("commit") + 1, "commit-zstd")
    strata = os.path.abspath(a.strata)
    if not os.access(strata, os.X_OK):
        sys.exit("no strata binary at %s (cargo build --release -p strata-cli)" % strata)
    r = subprocess.run([DOCKER, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    if r.returncode:
        sys.exit("docker daemon not reachable (../shared/bench/install-peers.sh starts it): %s"
                 % r.stderr.strip())
    harness = load_shared(os.path.abspath(a.shared))

    # SIGTERM/SIGHUP unwind through the finally below like ^C does.
    def stop(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tmp = tempfile.mkdtemp(prefix="cbench-")
    image = "cbench-busybox:%s" % run_id.lower()
    label = "cbench=%s" % run_id
    docker = Tool("docker", [DOCKER], dict(os.environ), ["--network", "none", "--label", label])
    strata_tool = Tool("strata", [strata], dict(os.environ, STRATA_ROOT=os.path.join(tmp, "root")),
                       ["--network", "none", "--label", label])
    tools = [docker, strata_tool]
    results = os.path.join(HERE, "results")
    os.makedirs(results, exist_ok=True)
    meta = {"run_id": run_id, "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "n": a.n, "rows": rows, "machine": harness.machine_info(), "image": image,
            "docker": "docker %s (dockerd, runc %s)" % (
                r.stdout.strip(), subprocess.run(["runc", "--version"], capture_output=True, text=True)
                .stdout.split("\n")[0].split()[-1]),
            "strata": strata, "flags": "--network none (both); stop -t 0 (both)",
            "commit": subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                                     capture_output=True, text=True).stdout.strip(),
            "loadavg_start": os.getloadavg()}
    samples = []
    json_path = os.path.join(results, "containers-%s.json" % run_id)
    done = False
    try:
        rootfs = harness.make_rootfs(os.path.join(tmp, "rootfs.tar"))
        changes = ["ENV PATH=" + PATH_DEFAULT, 'CMD ["sh"]']
        for t in tools:
            t.images.append(image)
            t.out("import", *[x for c in changes for x in ("--change", c)], rootfs, image)
        fx = {}
        for t in tools:
            log("%s: fixtures (50 sleepers, a 100 MB change, 100 MB of output)" % t.name)
            fx[t.name] = fixtures(t, image)
        # docker's ps lists every running container of the daemon, others' too: say how many
        meta["ps_running"] = {t.name: len(t.out("ps", "-q").split()) for t in tools}
        for rep in range(a.n):
            log("repetition %d/%d, load %.1f" % (rep + 1, a.n, os.getloadavg()[0]))
            for row in rows:
                order = tools if rep % 2 == 0 else tools[::-1]
                for t in order:
                    if row == "commit-zstd" and t.name == "docker":
                        continue  # docker commit has no compression: its layer is stored as is
                    load1 = os.getloadavg()[0]
                    wall = sample(t, row, image, fx[t.name], "cbench-commit:%s-%d" % (run_id.lower(), rep))
                    samples.append({"tool": t.name, "row": row, "rep": rep, "wall": wall, "load1": load1})
        done = True
    except KeyboardInterrupt:
        log("interrupted; writing partial results")
    finally:
        for t in tools:
            log("%s: removing %d containers, %d images" % (t.name, len(t.containers), len(t.images)))
            t.cleanup()
        left = subprocess.run([DOCKER, "ps", "-aq", "--filter", "label=" + label],
                              capture_output=True, text=True).stdout.split()
        if left:
            subprocess.run([DOCKER, "rm", "-f", *left], stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
        meta["loadavg_end"] = os.getloadavg()
        meta["complete"] = done
        if samples:
            data = {"meta": meta, "samples": samples, "summary": summarize(samples)}
            with open(json_path, "w") as f:
                json.dump(data, f, indent=1)
            md = table(data)
            with open(os.path.join(results, "table-%s.md" % run_id), "w") as f:
                f.write(md + "\n")
            print(md)
            log("results: %s" % json_path)


if __name__ == "__main__":
    main()
