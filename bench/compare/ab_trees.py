"""Table of bench/compare/ab_trees.sh's rounds: per size, before and after (medians over rounds), after/before
per round, Open MPI's best variant of each round (the one most often best named), and each arm's time over
Open MPI's, median [min-max] of the per-round ratios. Usage: ab_trees.py OUT_DIR"""
import json, glob, statistics, sys, re, collections
d = sys.argv[1]
per = collections.defaultdict(dict)  # (round, bytes) -> {key: t}
for f in glob.glob(f"{d}/*.jsonl"):
    m = re.match(r"(base|new|before|after)\.r(\d+)\.jsonl", f.split("/")[-1]); arm, r = m.group(1), int(m.group(2))
    for line in open(f):
        j = json.loads(line)
        arm = {"before": "base", "after": "new"}.get(arm, arm)
        key = arm if j.get("lib") == "choir" else j["series"]
        row = per[(r, j["bytes"])]
        # With BOTH=1 each arm ran Open MPI: keep its best of the round.
        row[key] = min(row.get(key, j["timeUs"]), j["timeUs"]) if key.startswith("openmpi") else j["timeUs"]
def fmt_t(us):
    return f"{us:.2f} us" if us < 1000 else f"{us/1000:.2f} ms"
def med(v): return statistics.median(v)
def cell(v, unit="x"): return f"{med(v):.2f}{unit} [{min(v):.2f}-{max(v):.2f}]"
sizes = sorted({b for (_, b) in per})
def sz(b):
    for u, s in ((1<<20, "MiB"), (1<<10, "KiB")):
        if b >= u: return f"{b//u} {s}"
    return f"{b} B"
print("| size | before | after | after / before | Open MPI best (variant most often best) | after / Open MPI | before / Open MPI | rounds |")
print("| ---- | ------ | ----- | -------------- | --------------------------------------- | ---------------- | ----------------- | ------ |")
for b in sizes:
    rs = sorted(r for (r, bb) in per if bb == b)
    A, B, O, ra, rb, ab, names = [], [], [], [], [], [], collections.Counter()
    for r in rs:
        row = per[(r, b)]
        if "base" not in row or "new" not in row: continue
        v = {k: t for k, t in row.items() if k.startswith("openmpi") and k != "openmpi shm"}
        if not v: continue
        k, o = min(v.items(), key=lambda kv: kv[1])
        names[k.replace("openmpi shm ", "")] += 1
        A.append(row["base"]); B.append(row["new"]); O.append(o)
        ra.append(row["new"] / o); rb.append(row["base"] / o); ab.append(row["new"] / row["base"])
    if not A: continue
    top = names.most_common(1)[0][0]
    print(f"| {sz(b)} | {fmt_t(med(A))} | {fmt_t(med(B))} | {cell(ab)} | {fmt_t(med(O))} ({top}) | {cell(ra)} | {cell(rb)} | {len(A)} |")
