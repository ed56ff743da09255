import json, glob, statistics, sys
tag = sys.argv[1]
keys = ["files", "layer_diff", "layer_reuse", "layer_tar", "scheduler, keys", "image, exit", "process"]
for who in ("before", "after"):
    rs = []
    for f in sorted(glob.glob("out/%s-%s-*.json" % (tag, who))):
        rs += json.load(open(f))
    for m in ("cold", "edit"):
        x = [r for r in rs if r["tag"] == m]
        if not x: continue
        med = lambda f: statistics.median(f(r) for r in x)
        print("%-6s %-4s N=%d wall %.3f [%.3f-%.3f] ckSum %.0f %s rss %.1fMB load %.1f-%.1f" % (
            who, m, len(x), med(lambda r: r["wall"]), min(r["wall"] for r in x), max(r["wall"] for r in x),
            1000 * med(lambda r: r["context_checksum"]),
            " ".join("%s %.0f" % (k.split(",")[0], 1000 * med(lambda r: r["parts"].get(k, 0))) for k in keys),
            max(r["rss_kb"] for r in x) / 1024, min(r["load"] for r in x), max(r["load"] for r in x)))
