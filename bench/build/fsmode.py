"""`run.py --fs ext4|xfs`: every (repetition, scenario, tool) block on a filesystem made for it.

For each block, in the harness's order (repetition → scenario → tool): a fresh filesystem
(freshfs.fresh), for BuildKit a private dockerd whose data root is on it, for strata a root on
it; the base image imported (untimed); then cold, warm (no-op), edit (scenarios with an
edit file) and export (without cold, an untimed priming build comes first), timed like the shared harness does (its `timed`, `Base`, `BuildKit`,
`summarize` are reused, not copied); then everything is stopped, unmounted and deleted.
Strata builds run with `--progress rawjson`: each sample keeps its phase breakdown
(phases.py) and its peak RSS (`/usr/bin/time -f %M`). With `--profile`, one more cold strata
build per scenario runs under `perf record` on a fresh filesystem, folded into a flame graph
(flame.py) beside the results; its time is not in the tables.
"""
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import flame
import freshfs
import phases

PATH_DEFAULT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def load_harness(shared):
    spec = importlib.util.spec_from_file_location("shared_harness", os.path.join(shared, "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def edited(s, who, rep):
    """The scenario's edit file with a unique line appended, restored afterwards."""
    ef = os.path.join(s["context_path"], s["edit_file"])
    with open(ef, "rb") as f:
        orig = f.read()
    nonce = "%s-%d-%d" % (who, rep, time.time_ns())
    try:
        with open(ef, "wb") as f:
            f.write(orig + ("\n// edit %s\n" % nonce).encode())
        yield nonce
    finally:
        with open(ef, "wb") as f:
            f.write(orig)


class Run:
    def __init__(self, a, strata, work, results, run_id):
        self.a, self.strata, self.work, self.results, self.run_id = a, strata, work, results, run_id
        self.h = load_harness(a.shared)
        self.measures = [m for m in a.measure.split(",") if m and m != "export-raw"]
        self.scen_names = (self.h.gen.SCENARIOS if a.scenarios == "all"
                           else a.scenarios.split(","))
        metas = self.h.gen.generate(os.path.join(work, "scenarios"), a.base, a.seed,
                                    self.scen_names)
        self.scens = []
        for n in self.scen_names:
            m = dict(metas[n])
            d = os.path.join(work, "scenarios", n)
            m["dockerfile_path"] = os.path.join(d, m["dockerfile"])
            m["context_path"] = os.path.join(d, m["context"])
            self.scens.append(m)
        self.base = self.h.Base(work, a.base)
        self.logs = os.path.join(work, "logs", run_id)
        self.out = os.path.join(work, "out")
        os.makedirs(self.out, exist_ok=True)
        self.fsdir = os.path.abspath(a.fs_dir)
        self.samples = []
        self.docker = os.environ.get("DOCKER", "/usr/bin/docker")

    # -- one timed command -------------------------------------------------------------
    def measure(self, who, s, m, rep, cmd, env, daemon_pids=(), extra=None):
        lp = os.path.join(self.logs, "%s.%s.%s.%d.log" % (who, s["name"], m, rep))
        load1 = os.getloadavg()[0]
        t0 = time.time()
        res = self.h.timed(cmd, env, lp, daemon_pids=daemon_pids)
        smp = {"tool": who, "scenario": s["name"], "measure": m, "rep": rep,
               "wall": round(res["wall"], 4), "rc": res["rc"], "ok": res["rc"] == 0,
               "cpu_client": round(res["cpu_client"], 3),
               "cpu_daemon": None if res["cpu_daemon"] is None else round(res["cpu_daemon"], 3),
               "load1_before": load1, "fs": self.a.fs, "log": os.path.relpath(lp, self.work)}
        if extra:
            smp.update(extra)
        if who == "strata" and m in ("cold", "warm", "edit"):
            parts, apart = phases.breakdown(phases.events(res["lines"]), t0, t0 + res["wall"])
            smp["phases_ms"] = {k: round(v * 1000, 2) for k, v in parts.items()}
            smp["context_checksum_ms"] = round(apart * 1000, 2)
        if who == "buildkit" and m in ("cold", "warm", "edit"):
            smp["vertices"] = self.h.parse_buildkit(res["lines"])
        self.samples.append(smp)
        self.h.log("%-8s %-10s %-6s rep%d %7.3fs rc=%d load1=%.2f (%s)" % (
            who, s["name"], m, rep, res["wall"], res["rc"], load1, self.a.fs))
        if res["rc"]:
            raise RuntimeError("%s %s %s failed, see %s" % (who, s["name"], m, lp))
        return smp

    def builds(self, who, s, rep, build, env, pids=(), after=None):
        if "cold" not in self.measures and {"warm", "edit"} & set(self.measures):
            # A no-op or an edit needs a built cache: on this fresh filesystem, an unrecorded
            # priming build (without it, `--measure warm` alone timed cold builds).
            self.h.sh(build(), env=env)
        for m in ("cold", "warm", "edit"):
            if m not in self.measures:
                continue
            if m == "edit":
                if not s.get("edit_file"):
                    continue
                with edited(s, who, rep) as nonce:
                    smp = self.measure(who, s, m, rep, build(), env, pids, {"edit_nonce": nonce})
            else:
                smp = self.measure(who, s, m, rep, build(), env, pids)
            if after:
                after(smp)

    # -- the two tools -----------------------------------------------------------------
    def buildkit_block(self, s, rep):
        tool = self.h.BuildKit(self.a, self.work, self.base)
        run_dir = "/run/strata-coldbench-%d" % os.getpid()
        with freshfs.fresh(self.a.fs, self.fsdir, "buildkit-%d" % os.getpid()) as mnt, \
                freshfs.dockerd(os.path.join(mnt, "docker"), run_dir,
                                os.path.join(self.logs, "dockerd.log"), self.docker) as (env, pids):
            tool.env = env
            self.h.sh([self.docker, "import", "--change", "ENV PATH=" + PATH_DEFAULT,
                       "--change", 'CMD ["sh"]', self.base.rootfs, self.base.tag], env=env)
            iid = os.path.join(self.work, "iid")
            self.builds("buildkit", s, rep, lambda: tool.build_cmd(s, iid), env, pids)
            if "export" in self.measures:
                out = os.path.join(self.out, "buildkit-%s.tar" % s["name"])
                self.measure("buildkit", s, "export", rep, tool.export_cmd(s, out, False), env,
                             pids, {"archive_bytes": None})
                self.samples[-1]["archive_bytes"] = os.path.getsize(out)
                os.unlink(out)

    def strata_env(self, mnt):
        return dict(os.environ, STRATA_ROOT=os.path.join(mnt, "root"))

    def strata_setup(self, env):
        self.h.sh([self.strata, "import", "-c", "ENV PATH=" + PATH_DEFAULT, "-c", 'CMD ["sh"]',
                   self.base.rootfs, self.base.tag], env=env)

    def strata_build_cmd(self, s, rss):
        return ["/usr/bin/time", "-o", rss, "-f", "%M", self.strata, "build", "--progress",
                "rawjson", "--network", "none", "-t", "sbench-%s:latest" % s["name"],
                "-f", s["dockerfile_path"], s["context_path"]]

    def strata_block(self, s, rep):
        rss = os.path.join(self.work, "maxrss")

        def after(smp):
            with contextlib.suppress(OSError, ValueError):
                with open(rss) as f:
                    smp["max_rss_kb"] = int(f.read().split()[-1])

        with freshfs.fresh(self.a.fs, self.fsdir, "strata-%d" % os.getpid()) as mnt:
            env = self.strata_env(mnt)
            self.strata_setup(env)
            self.builds("strata", s, rep, lambda: self.strata_build_cmd(s, rss), env,
                        after=after)
            if "export" in self.measures:
                out = os.path.join(self.out, "strata-%s.tar" % s["name"])
                self.measure("strata", s, "export", rep,
                             [self.strata, "save", "-o", out, "sbench-%s:latest" % s["name"]],
                             env)
                self.samples[-1]["archive_bytes"] = os.path.getsize(out)
                os.unlink(out)

    # -- perf --------------------------------------------------------------------------
    def profile(self, s):
        """One cold strata build of `s` under perf on a fresh filesystem: flame graph SVG,
        folded stacks and the top frames, under results/. Returns the top frames."""
        name = "flame-%s-%s-%s" % (self.run_id, self.a.fs, s["name"])
        data = os.path.join(self.work, "perf-%s.data" % s["name"])
        rss = os.path.join(self.work, "maxrss")
        with freshfs.fresh(self.a.fs, self.fsdir, "strata-%d" % os.getpid()) as mnt:
            env = self.strata_env(mnt)
            self.strata_setup(env)
            cmd = ["perf", "record", "-q", "-F", str(self.a.perf_freq), "--call-graph",
                   "dwarf,16384", "-o", data, "--"] + self.strata_build_cmd(s, rss)
            t0 = time.perf_counter()
            r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wall = time.perf_counter() - t0
        if r.returncode:
            raise RuntimeError("perf record of %s failed: %s" % (s["name"], r.stderr[-500:]))
        script = subprocess.run(["perf", "script", "-i", data, "--no-inline"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        folded = flame.fold(script.stdout.decode(errors="replace").splitlines())
        os.unlink(data)
        with open(os.path.join(self.results, name + ".folded"), "w") as f:
            for k in sorted(folded):
                f.write("%s %d\n" % (k, folded[k]))
        title = "strata cold build, %s, %s, %s (%.2f s under perf)" % (
            s["name"], self.a.fs, self.run_id, wall)
        with open(os.path.join(self.results, name + ".svg"), "w") as f:
            f.write(flame.svg(folded, title))
        self.h.log("profile %s: %d samples -> results/%s.svg" % (s["name"], sum(folded.values()),
                                                                  name))
        return {"scenario": s["name"], "wall_under_perf": round(wall, 3),
                "samples": sum(folded.values()), "svg": name + ".svg",
                "folded": name + ".folded",
                "by_comm": sorted(((c, n) for c, n in _by_comm(folded).items()),
                                  key=lambda x: -x[1]),
                "top_inclusive": flame.top(folded, 25), "top_self": flame.top(folded, 25, True)}

    # -- the run -----------------------------------------------------------------------
    def go(self):
        meta = {"run_id": self.run_id, "mode": "fresh %s per block" % self.a.fs, "n": self.a.n,
                "fs": self.a.fs, "fs_dir": self.fsdir, "measures": self.measures,
                "machine": self.h.machine_info(), "loadavg_start": os.getloadavg(),
                "scenarios": {s["name"]: {k: s.get(k) for k in ("description", "edit_file",
                                                                 "files", "bytes")}
                              for s in self.scens}}
        profiles = []
        try:
            for rep in range(self.a.n):
                for s in self.scens:
                    if rep >= self.a.n_for.get(s["name"], self.a.n):
                        continue
                    for who, block in (("buildkit", self.buildkit_block),
                                       ("strata", self.strata_block)):
                        try:
                            block(s, rep)
                        except KeyboardInterrupt:
                            raise
                        except Exception as e:  # noqa: BLE001 (one block lost, not the run)
                            self.h.log("%s %s rep%d: block aborted: %s" % (who, s["name"], rep,
                                                                          str(e)[:300]))
                            self.samples.append({"tool": who, "scenario": s["name"],
                                                 "measure": "block", "rep": rep, "ok": False,
                                                 "error": str(e)[:2000]})
            if self.a.profile:
                for s in self.scens:
                    try:
                        profiles.append(self.profile(s))
                    except KeyboardInterrupt:
                        raise
                    except Exception as e:  # noqa: BLE001
                        self.h.log("profile %s failed: %s" % (s["name"], str(e)[:300]))
        except KeyboardInterrupt:
            self.h.log("interrupted; writing partial results")
        meta["loadavg_end"] = os.getloadavg()
        meta["tools"] = {"strata": subprocess.run([self.strata, "--version"],
                                                  capture_output=True, text=True).stdout.strip(),
                         "buildkit": subprocess.run([self.docker, "--version"],
                                                    capture_output=True, text=True).stdout.strip()}
        meta["scenario_n"] = {s["name"]: self.a.n_for.get(s["name"], self.a.n)
                              for s in self.scens}
        summary = self.h.summarize(self.samples, ["buildkit", "strata"], self.scen_names,
                                   self.measures)
        return {"meta": meta, "summary": summary, "samples": self.samples,
                "profiles": profiles}


def _by_comm(folded):
    out = {}
    for k, c in folded.items():
        comm = k.split(";", 1)[0]
        out[comm] = out.get(comm, 0) + c
    return out


def check(a):
    """Refuses to start without what the mode needs."""
    if os.geteuid() != 0:
        sys.exit("--fs needs root (mkfs, mount, dockerd)")
    freshfs.check_tools(a.fs)
    if a.profile and not shutil.which("perf"):
        # Debian's perf for the running kernel's series; the bench VM is root with apt.
        print("perf not found: apt-get install linux-perf", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", "linux-perf"], check=False)
        if not shutil.which("perf"):
            sys.exit("perf still not found after apt-get install linux-perf")
