#!/usr/bin/env python3
"""tlsum.py TL.json...: medians of a tl.py run's RUN timeline per binary (ms; from the RUN's
started event unless said): sandbox start to the command's exec, the command (sh exec to exit),
its exit to the RUN's finished event, the finished event to the process's exit, wall."""
import json, sys, statistics
for path in sys.argv[1:]:
    res = json.load(open(path))
    print(path)
    for b, s in res.items():
        s = [x for x in s if all(x.get(k) is not None for k in ("sh_exec", "send", "mon_fork", "sh_exit", "run_fin", "exit"))]
        med = lambda f: statistics.median([f(x) for x in s])
        print("  %-14s n=%2d load %.1f-%.1f | send->monitor fork %.1f | to exec %.1f | command %.1f | exit->RUN finished %.1f | finished->exit %.1f | wall %.1f" % (
            b.split("/")[-1], len(s), min(x["load"] for x in s), max(x["load"] for x in s),
            med(lambda x: x["mon_fork"] - x["send"]), med(lambda x: x["sh_exec"]),
            med(lambda x: x["sh_exit"] - x["sh_exec"]), med(lambda x: x["run_fin"] - x["sh_exit"]),
            med(lambda x: x["exit"] - x["run_fin"]), med(lambda x: x["wall"])))
