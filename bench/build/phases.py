"""Where a strata build's wall time goes, from its own event log (`--progress rawjson`).

Each `finished` event carries `phases`: seconds per phase of that step, in the order they
were timed (docs/build.md lists them). Within a step the phases run one after the other, so
laying them end to end from the step's `started` event gives each an interval; steps of
parallel stages overlap, and at any moment the wall time is split evenly between the
intervals running then. Added up, the phases and the gaps account for the whole wall time:

  startup, parse, lower   from the process start to its first event (exec, store and cache
                          opened, Dockerfile parsed and lowered, outputs checked)
  <phase>                 the step phases, wall time attributed as above
  step, untimed           inside a step, outside its timed phases (task hand-offs)
  scheduler, keys         no step running: cache keys (the context checksums: see
                          context_checksum), cache probes, waiting on the scheduler
  image, exit             from the last event to the exit: the context's stat cache
                          saved, the image config and manifest committed and tagged,
                          the process gone

`context_checksum` is timed before its COPY starts (keys come first), so it has no place on
the timeline: it is inside "scheduler, keys", and its own time is listed apart.
"""
import json
import statistics

STARTUP, STEP_REST, GAP, TAIL = "startup, parse, lower", "step, untimed", "scheduler, keys", \
    "image, exit"
ORDER = [STARTUP, "image", "context_scan", "unpack", "sandbox_start", "process", "files",
         "layer_diff", "layer_reuse", "layer_tar", "commit", "record", STEP_REST, GAP, TAIL]
APART = "context_checksum"


def events(lines):
    """The JSON events among a build's output lines ((offset, text) pairs)."""
    out = []
    for _, text in lines:
        if text.startswith("{"):
            try:
                out.append(json.loads(text))
            except ValueError:
                pass
    return out


def breakdown(evs, t_start, t_end):
    """{part: seconds} for one build that ran from t_start to t_end (epoch seconds); the parts
    add up to t_end - t_start. Also returns the summed context_checksum seconds."""
    started = {e["node"]: e["time"] for e in evs if e.get("event") == "started"}
    intervals = []  # (start, end, part)
    apart = 0.0
    for e in evs:
        if e.get("event") != "finished" or e["node"] not in started:
            continue
        t0, t1 = started[e["node"]], started[e["node"]] + e["elapsed"]
        t = t0
        for name, secs in (e.get("phases") or {}).items():
            if name == APART:
                apart += secs
                continue
            intervals.append((t, min(t + secs, t1), name))
            t += secs
        if t < t1:
            intervals.append((t, t1, STEP_REST))
    times = [e["time"] for e in evs if "time" in e]
    parts = {p: 0.0 for p in ORDER}
    if not times:
        parts[STARTUP] = t_end - t_start
        return parts, apart
    first, last = min(times), max(times)
    parts[STARTUP] = max(0.0, first - t_start)
    parts[TAIL] = max(0.0, t_end - last)
    # Sweep the timeline from the first event to the last.
    cuts = sorted({first, last} | {x for a, b, _ in intervals for x in (a, b)
                                   if first <= x <= last})
    for a, b in zip(cuts, cuts[1:]):
        live = [p for s, e, p in intervals if s <= a and e >= b and e > s]
        if not live:
            parts[GAP] += b - a
        for p in live:
            parts[p] += (b - a) / len(live)
    return parts, apart


def sample_parts(sample):
    """A strata sample's breakdown in ms (stored in the JSON by run.py), or None."""
    return sample.get("phases_ms")


def table(samples, scenarios, measures=("cold", "warm", "edit")):
    """Markdown: per scenario and measure, each part's median ms and its share of the median
    wall, over the strata samples that carry a breakdown."""
    out = []
    for sc in scenarios:
        for m in measures:
            got = [s for s in samples if s.get("tool") == "strata" and s.get("scenario") == sc
                   and s.get("measure") == m and s.get("ok") and s.get("phases_ms")]
            if not got:
                continue
            wall = statistics.median(s["wall"] * 1000 for s in got)
            out += ["", "#### %s, %s (strata, N=%d, median wall %.0f ms)" % (sc, m, len(got), wall),
                    "", "| phase | ms (median) | share of wall | min–max ms |", "|---|---|---|---|"]
            for p in ORDER:
                vals = [s["phases_ms"].get(p, 0.0) for s in got]
                med = statistics.median(vals)
                if max(vals) < 0.5:
                    continue
                out.append("| %s | %.0f | %.0f%% | %.0f–%.0f |" % (p, med, 100 * med / wall,
                                                                   min(vals), max(vals)))
            cc = [s.get("context_checksum_ms", 0.0) for s in got]
            if max(cc) >= 0.5:
                out.append("| (context_checksum, inside scheduler, keys) | %.0f | %.0f%% | "
                           "%.0f–%.0f |" % (statistics.median(cc), 100 * statistics.median(cc) / wall,
                                            min(cc), max(cc)))
    return "\n".join(out)
