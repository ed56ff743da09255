#!/usr/bin/env python3
"""tl.py N BIN...: interleaved edit builds under perf tracepoints (realtime clock); per build the
RUN's timeline (ms from the RUN's started event) and the tail. Prints medians per binary."""
import json, os, subprocess, sys, statistics, re
W = "/var/tmp/ciedit"
n = int(sys.argv[1]); bins = sys.argv[2:]
EV = ("sched:sched_process_fork,sched:sched_process_exec,sched:sched_process_exit,"
      "syscalls:sys_enter_sendmsg,syscalls:sys_enter_syncfs,syscalls:sys_exit_syncfs,syscalls:sys_enter_exit_group")
env = dict(os.environ, STRATA_ROOT=W + "/mnt/root")
res = {b: [] for b in bins}
line_re = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$")
for i in range(n):
    for b in bins:
        subprocess.run([W + "/edit.sh"], check=True)
        load = os.getloadavg()[0]; import time as _t; OFF = _t.time() - _t.monotonic()
        out = subprocess.run(["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-o", "/tmp/tl.data", "-e", EV, "--",
                              b, "build", "--progress", "rawjson", "--network", "none", "-t", "sbench-ci-edit:latest",
                              "-f", W + "/sc/ci-edit/Dockerfile", W + "/sc/ci-edit/ctx"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
        evs = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        run = [e for e in evs if e.get("event") == "started" and "RUN mkdir" in e.get("label", "")][0]
        fin = [e for e in evs if e.get("event") == "finished" and e["node"] == run["node"]][0]
        t0 = run["time"] - OFF
        txt = subprocess.run(["perf", "script", "-i", "/tmp/tl.data", "-F", "comm,pid,tid,time,event,trace"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode()
        recs = []
        for l in txt.splitlines():
            m = line_re.match(l)
            if m:
                recs.append((m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4)), m.group(5), m.group(6)))
        main = [r for r in recs if r[4] == "sched:sched_process_exec" and ("filename=%s " % b) in r[5] + " "]
        mpid = main[0][1]
        start = main[0][3]
        # the helper: exec of /proc/self/exe by a child of main
        kids = {}
        for r in recs:
            if r[4] == "sched:sched_process_fork":
                cp = int(re.search(r"child_pid=(\d+)", r[5]).group(1))
                kids[cp] = (r[1], r[2], r[3])
        def t(x): return None if x is None else (x - t0) * 1000
        helper = [r for r in recs if r[4] == "sched:sched_process_exec" and "__sandbox" not in r[5] and r[1] in kids and kids[r[1]][0] == mpid]
        hpid = helper[0][1] if helper else None
        mon = [cp for cp, (pp, _, tt) in kids.items() if pp == hpid]
        mon = mon[0] if mon else None
        init = [cp for cp, (pp, _, tt) in kids.items() if pp == mon]
        init = init[0] if init else None
        cmd = [cp for cp, (pp, _, tt) in kids.items() if pp == init]
        cmd = cmd[0] if cmd else None
        sends = [r[3] for r in recs if r[4] == "syscalls:sys_enter_sendmsg" and r[1] == mpid and r[3] >= t0 - 0.001]
        ex = lambda pid: next((r[3] for r in recs if r[4] == "sched:sched_process_exit" and r[2] == pid), None)
        execs = lambda pid: next((r[3] for r in recs if r[4] == "sched:sched_process_exec" and r[1] == pid), None)
        sync = [r[3] for r in recs if r[4] == "syscalls:sys_enter_syncfs" and r[1] == mpid]
        synce = [r[3] for r in recs if r[4] == "syscalls:sys_exit_syncfs" and r[1] == mpid]
        endmain = next((r[3] for r in recs if r[4] == "sched:sched_process_exit" and r[2] == mpid), None)
        d = {"load": load, "wall": (endmain - start) * 1000,
             "send": t(sends[0] if sends else None), "mon_fork": t(kids[mon][2]) if mon else None,
             "init_fork": t(kids[init][2]) if init else None, "cmd_fork": t(kids[cmd][2]) if cmd else None,
             "sh_exec": t(execs(cmd)), "sh_exit": t(ex(cmd)), "init_exit": t(ex(init)), "mon_exit": t(ex(mon)),
             "run_fin": t(fin["time"] - OFF), "last_ev": t(evs[-1]["time"] - OFF),
             "syncfs": t(sync[-1]) if sync else None, "syncfs_end": t(synce[-1]) if synce else None,
             "exit": t(endmain), "phases": fin.get("phases")}
        res[b].append(d)
json.dump(res, open(W + "/tl-%d.json" % int(__import__("time").time()), "w"))
for b in bins:
    for x in res[b]:
        x["exit_to_fin"] = x["run_fin"] - x["sh_exit"] if x["sh_exit"] is not None else None
        x["fin_to_exit"] = x["exit"] - x["run_fin"]
keys = ["exit_to_fin", "fin_to_exit", "wall", "send", "mon_fork", "init_fork", "cmd_fork", "sh_exec", "sh_exit", "init_exit", "mon_exit", "run_fin", "last_ev", "syncfs", "syncfs_end", "exit"]
for b in bins:
    s = res[b]
    print("%s (load %.1f-%.1f)" % (b, min(x["load"] for x in s), max(x["load"] for x in s)))
    print("  " + "  ".join("%s %.1f" % (k, statistics.median([x[k] for x in s if x[k] is not None])) for k in keys if any(x[k] is not None for x in s)))
