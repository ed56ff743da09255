"""RUN start to exit from strata's own event log: the `sandbox_start` and `process` phases
of every RUN step in the given `--progress rawjson` outputs (one file per build), pooled.

    for i in $(seq 8); do for b in before after; do
        $b --root /tmp/root-$b build --no-cache --progress rawjson ctx > m-$b-$i.json
    done; done
    python3 run_start.py m-before-*.json; python3 run_start.py m-after-*.json

Prints, in ms: the median and p90 of start to exit, of each phase, the share of RUNs at or
under 5 ms (issue 15's goal) and the spread of the per-build medians.
"""
import json
import statistics
import sys


def runs(path):
    """(sandbox_start, process) in ms of each RUN step of one build's output."""
    out = []
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            ph = e.get("phases") or {}
            if e.get("event") == "finished" and "sandbox_start" in ph and "process" in ph:
                out.append((ph["sandbox_start"] * 1e3, ph["process"] * 1e3))
    return out


def p90(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(0.9 * len(values)))]


def main(paths):
    builds = [runs(p) for p in paths]
    builds = [b for b in builds if b]
    if not builds:
        sys.exit("no RUN steps with phases in the given outputs")
    start = [s for b in builds for s, _ in b]
    proc = [p for b in builds for _, p in b]
    total = [s + p for b in builds for s, p in b]
    per_build = sorted(statistics.median(s + p for s, p in b) for b in builds)
    under = 100 * sum(t <= 5 for t in total) / len(total)
    print(f"{len(builds)} builds, {len(total)} RUNs")
    print(f"start to exit: median {statistics.median(total):.2f} ms, p90 {p90(total):.1f} ms,"
          f" {under:.0f} % at or under 5 ms")
    print(f"sandbox start: median {statistics.median(start):.2f} ms, p90 {p90(start):.1f} ms")
    print(f"process:       median {statistics.median(proc):.2f} ms, p90 {p90(proc):.1f} ms")
    print(f"per-build medians: {per_build[0]:.2f}-{per_build[-1]:.2f},"
          f" median {statistics.median(per_build):.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
