#!/usr/bin/env bash
# A/B of one environment variable on the same benchmark rows: ROUNDS (default 7) interleaved rounds of
# fresh launches, the order of A and B alternating each round, then the median and spread of each row's
# time per arm. Usage: bench/compare/ab_env.sh VAR VALUE_A VALUE_B [bench args...]
# e.g. bench/compare/ab_env.sh CHOIR_HEARTBEAT_MS 0 1000 --op allreduce --sizes 8,4K --transport tcp
# Run it on a quiet machine: nothing else may run at the same time.
set -u
cd "$(dirname "$0")/../.."
var=$1 a=$2 b=$3
shift 3
out=${OUT_DIR:-/tmp/choir-ab}
rm -rf "$out" && mkdir -p "$out"
deno=(deno)
command -v deno >/dev/null 2>&1 || deno=(npx -y deno@2.9.6)
export NO_COLOR=1
for r in $(seq 1 "${ROUNDS:-7}"); do
  order=("$a" "$b")
  ((r % 2 == 0)) && order=("$b" "$a")
  for v in "${order[@]}"; do
    env "$var=$v" "${deno[@]}" task bench --no-progress "$@" --json "$out/$v.r$r.jsonl" >/dev/null 2>"$out/$v.r$r.err" ||
      { echo "round $r $var=$v failed: $(tail -3 "$out/$v.r$r.err")" >&2; exit 1; }
  done
done
python3 - "$out" "$var" "$a" "$b" <<'PY'
import json, glob, statistics, sys
out, var, a, b = sys.argv[1:]
rows = {}
for v in (a, b):
    for f in sorted(glob.glob(f"{out}/{v}.r*.jsonl")):
        for line in open(f):
            j = json.loads(line)
            key = (j.get("op"), j.get("transport", j.get("series", "")), j.get("bytes", j.get("size")))
            t = j.get("time_us", j.get("timeUs", j.get("us")))
            if t is not None: rows.setdefault(key, {}).setdefault(v, []).append(t)
print(f"| op | series | bytes | {var}={a} median us [min-max] | {var}={b} median us [min-max] | B/A |")
print("|---|---|---|---|---|---|")
for key, arms in sorted(rows.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]), kv[0][2] or 0)):
    def cell(xs): return f"{statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}] (n={len(xs)})"
    if a in arms and b in arms:
        print(f"| {key[0]} | {key[1]} | {key[2]} | {cell(arms[a])} | {cell(arms[b])} | {statistics.median(arms[b])/statistics.median(arms[a]):.3f} |")
PY
