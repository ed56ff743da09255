#!/usr/bin/env python3
"""`perf script` output → folded stacks → a flame graph SVG. Python stdlib only (no inferno or
FlameGraph checkout needed on the bench machine).

    perf script -i perf.data --no-inline | python3 flame.py --title T out.svg [--folded out.folded]

Folded lines are `comm;outermost;...;innermost count` (Brendan Gregg's format, so inferno or
flamegraph.pl can redraw them). Symbols lose their `+0x..` offsets and Rust hashes; a frame
perf could not name is `[dso]`. The SVG has one box per frame (width = share of samples, a
tooltip with the count and share), boxes narrower than 0.1 px are left out.
"""
import argparse
import hashlib
import html
import re
import sys

_HASH = re.compile(r"::h[0-9a-f]{16}$")


def fold(lines):
    """{stack: count} from perf script text."""
    folded, stack, comm = {}, [], None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                key = ";".join([comm] + stack[::-1])
                folded[key] = folded.get(key, 0) + 1
            stack, comm = [], None
            continue
        if not line[0].isspace():
            comm = line.split(None, 1)[0] if line.split() else "?"
            stack = []
            continue
        parts = line.strip().split(None, 1)
        rest = parts[1] if len(parts) > 1 else "[unknown]"
        sym, _, dso = rest.rpartition(" (")
        dso = dso.rstrip(")")
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym.strip())
        if not sym or sym == "[unknown]":
            sym = "[%s]" % dso.rsplit("/", 1)[-1] if dso else "[unknown]"
        stack.append(_HASH.sub("", sym).replace(";", ":"))
    if comm is not None:
        key = ";".join([comm] + stack[::-1])
        folded[key] = folded.get(key, 0) + 1
    return folded


def _tree(folded):
    root = {"n": 0, "kids": {}}
    for stack, count in folded.items():
        node = root
        node["n"] += count
        for frame in stack.split(";"):
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    return root


def _color(name):
    h = int(hashlib.md5(name.encode()).hexdigest()[:6], 16)
    if name.startswith("strata") or "strata_" in name:
        return "rgb(%d,%d,%d)" % (80 + h % 60, 140 + (h >> 8) % 80, 200 + (h >> 16) % 55)
    if "[k]" in name or name.startswith(("__x64_sys", "do_", "ext4_", "xfs_", "__")):
        return "rgb(%d,%d,%d)" % (200 + h % 55, 120 + (h >> 8) % 60, 60)
    return "rgb(%d,%d,%d)" % (220 + h % 35, 80 + (h >> 8) % 120, 40 + (h >> 16) % 40)


def svg(folded, title, width=1200, row=16):
    root = _tree(folded)
    total = root["n"] or 1
    boxes = []

    def walk(node, name, x, depth):
        w = width * node["n"] / total
        if w < 0.1:
            return
        if name is not None:
            boxes.append((x, depth, w, name, node["n"]))
        cx = x
        for kid, sub in sorted(node["kids"].items()):
            walk(sub, kid, cx, depth + 1)
            cx += width * sub["n"] / total

    walk(root, None, 0.0, -1)
    depth = max((d for _, d, _, _, _ in boxes), default=0) + 1
    height = (depth + 3) * row
    out = ['<?xml version="1.0" standalone="no"?>',
           '<svg version="1.1" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg" '
           'font-family="monospace" font-size="11">' % (width, height),
           '<rect width="100%%" height="100%%" fill="#f8f8f8"/>',
           '<text x="%d" y="%d" text-anchor="middle" font-size="14">%s (%d samples)</text>'
           % (width // 2, row, html.escape(title), total)]
    for x, d, w, name, n in boxes:
        y = height - (d + 1) * row
        label = html.escape(name)
        tip = "%s (%d samples, %.2f%%)" % (label, n, 100.0 * n / total)
        out.append('<g><title>%s</title><rect x="%.1f" y="%d" width="%.1f" height="%d" '
                   'fill="%s" stroke="#fff" stroke-width="0.3"/>' % (tip, x, y, w, row - 1,
                                                                     _color(name)))
        chars = int(w / 7)
        if chars >= 3:
            text = label if len(name) <= chars else html.escape(name[:chars - 2]) + ".."
            out.append('<text x="%.1f" y="%d">%s</text>' % (x + 2, y + row - 4, text))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def top(folded, n=15, leaf=False):
    """The `n` frames with the most samples, inclusive (or as the innermost frame)."""
    counts, total = {}, sum(folded.values()) or 1
    for stack, c in folded.items():
        frames = stack.split(";")
        for f in ([frames[-1]] if leaf else set(frames[1:])):
            counts[f] = counts.get(f, 0) + c
    return [(f, c, 100.0 * c / total) for f, c in
            sorted(counts.items(), key=lambda kv: -kv[1])[:n]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("svg")
    ap.add_argument("--title", default="strata")
    ap.add_argument("--folded")
    a = ap.parse_args()
    folded = fold(sys.stdin)
    if a.folded:
        with open(a.folded, "w") as f:
            for k in sorted(folded):
                f.write("%s %d\n" % (k, folded[k]))
    with open(a.svg, "w") as f:
        f.write(svg(folded, a.title))


if __name__ == "__main__":
    main()
