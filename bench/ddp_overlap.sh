#!/usr/bin/env bash
# DDP's overhead and overlap in one command: the ~10M-parameter MLP of bench/ddp_mlp.ts on N local
# ranks (default 2, shared memory), per round four runs one after the other: no communication
# (the same processes, DDP not wrapped), DDP with a synchronous backward, DDP with backwardAsync, and
# DDP with a synchronous backward and gradientAsBucketView (gradients living in the buckets).
# Prints each run's median step and, at the end, the median over rounds and DDP's overhead; the last
# round's async run also draws its last step (buckets' allreduces during backward) and writes a
# Chrome trace to $OUT_DIR/ddp_trace.json. Usage: [BUCKET_CAP_MB=25] bench/ddp_overlap.sh [ROUNDS] [NPROC] [ITERS]
set -u
cd "$(dirname "$0")/.."
rounds=${1:-3} nproc=${2:-2} iters=${3:-10}
out=${OUT_DIR:-/tmp/choir-ddp}
mkdir -p "$out"
cap=${BUCKET_CAP_MB:-25}
declare -A runs=([none]="" [sync]="--ddp --bucket-cap-mb $cap" [async]="--ddp --async --bucket-cap-mb $cap"
  [view]="--ddp --view --bucket-cap-mb $cap")
for r in $(seq "$rounds"); do
  for mode in none sync async view; do
    extra=()
    [ "$mode" = async ] && [ "$r" = "$rounds" ] && extra=(--timeline "$out/ddp_trace.json")
    # shellcheck disable=SC2086
    NO_COLOR=1 timeout 600 deno run -A launch/mod.ts --nproc-per-node "$nproc" bench/ddp_mlp.ts \
      --iters "$iters" ${runs[$mode]} "${extra[@]}" 2>&1 | sed 's/^\[rank 0\] //' | tee "$out/$mode.$r.txt" |
      grep -v '^\[rank'
  done
done
python3 - "$out" "$rounds" <<'PY'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
med = {}
for mode in ("none", "sync", "async", "view"):
    ms = []
    for r in range(1, rounds + 1):
        m = re.search(r"step: median ([0-9.]+) ms", open(f"{out}/{mode}.{r}.txt").read())
        if m: ms.append(float(m.group(1)))
    med[mode] = statistics.median(ms) if ms else float("nan")
    print(f"{mode:6s} step median over {len(ms)} rounds: {med[mode]:.1f} ms  ({', '.join(f'{x:.1f}' for x in ms)})")
for mode in ("sync", "async", "view"):
    print(f"DDP overhead, {mode}: {100 * (med[mode] / med['none'] - 1):+.1f}%")
PY
