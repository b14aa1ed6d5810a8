#!/usr/bin/env bash
# The steady-state overhead of fault tolerance (FtManager: DDP over the quorum's group, one commit vote
# through the launcher's store per step, the optimizer step on commit) against plain DDP, on the
# ~10M-parameter MLP of bench/ddp_mlp.ts, N local ranks (default 2). Each round runs plain DDP, then the
# same steps under FtManager, one after the other (interleaved, so drift hits both alike); prints each
# run's median step, then the medians over rounds and the overhead. No failure is injected.
# Usage: [EXTRA="--async --view"] bench/ft_overhead.sh [ROUNDS=5] [NPROC=2] [ITERS=10]
set -u
cd "$(dirname "$0")/.."
rounds=${1:-5} nproc=${2:-2} iters=${3:-10}
out=${OUT_DIR:-/tmp/choir-ft}
mkdir -p "$out"
extra=${EXTRA:-}
for r in $(seq "$rounds"); do
  for mode in ddp ft; do
    # shellcheck disable=SC2086
    NO_COLOR=1 timeout 600 deno run -A launch/mod.ts --nproc-per-node "$nproc" bench/ddp_mlp.ts \
      --iters "$iters" "--$mode" $extra 2>&1 | sed 's/^\[rank 0\] //' | tee "$out/$mode.$r.txt" | grep -v '^\[rank'
  done
done
python3 - "$out" "$rounds" <<'PY'
import re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
med = {}
for mode in ("ddp", "ft"):
    ms = []
    for r in range(1, rounds + 1):
        m = re.search(r"step: median ([0-9.]+) ms", open(f"{out}/{mode}.{r}.txt").read())
        if m: ms.append(float(m.group(1)))
    med[mode] = statistics.median(ms) if ms else float("nan")
    print(f"{mode:4s} step median over {len(ms)} rounds: {med[mode]:.1f} ms  ({', '.join(f'{x:.1f}' for x in ms)})")
print(f"fault-tolerance overhead over plain DDP: {100 * (med['ft'] / med['ddp'] - 1):+.2f}%")
PY
