#!/usr/bin/env bash
# The steady-state overhead of fault tolerance (FtManager: DDP over the quorum's group, the commit vote
# per step, the optimizer step on commit) against plain DDP, on the ~10M-parameter MLP of
# bench/ddp_mlp.ts, N local ranks (default 2). No failure is injected.
#
# Each round is one fresh launch of bench/ft_ab.ts, which trains a plain-DDP copy and an FtManager copy
# of the model in the same processes, their steps alternating (the order alternating between rounds
# too), so both kinds see the same cores, JIT state and machine load. Prints each round's medians, the
# medians over rounds and their overhead, then each round's own overhead: the median over rounds and
# the spread. SEPARATE=1 runs the two kinds as separate launches of bench/ddp_mlp.ts (`--ddp`, `--ft`)
# instead, as before: on the 2-core test machine a launch's step time alone varies by +-20%.
# Usage: [SEPARATE=1 [EXTRA="--async --view"]] bench/ft_overhead.sh [ROUNDS=5] [NPROC=2] [ITERS=10]
set -u
cd "$(dirname "$0")/.."
rounds=${1:-5} nproc=${2:-2} iters=${3:-10}
out=${OUT_DIR:-/tmp/choir-ft}
mkdir -p "$out"
extra=${EXTRA:-}
for r in $(seq "$rounds"); do
  if [ "${SEPARATE:-0}" = 1 ]; then
    # The order alternates between rounds, so that whatever drifts within a round hits both alike.
    modes=(ddp ft)
    ((r % 2 == 0)) && modes=(ft ddp)
    for mode in "${modes[@]}"; do
      # shellcheck disable=SC2086
      NO_COLOR=1 timeout 600 deno run -A launch/mod.ts --nproc-per-node "$nproc" bench/ddp_mlp.ts \
        --iters "$iters" "--$mode" $extra 2>&1 | sed 's/^\[rank 0\] //' | tee "$out/$mode.$r.txt" |
        grep -v '^\[rank'
    done
  else
    first=()
    ((r % 2 == 0)) && first=(--ft-first)
    NO_COLOR=1 timeout 600 deno run -A launch/mod.ts --nproc-per-node "$nproc" bench/ft_ab.ts \
      --iters "$iters" "${first[@]}" 2>&1 | sed 's/^\[rank 0\] //' | tee "$out/ab.$r.txt" | grep -v '^\[rank'
    # The same lines as the separate launches give, one file per kind.
    for mode in ddp ft; do
      grep "^$mode step: median" "$out/ab.$r.txt" | sed "s/^$mode //" >"$out/$mode.$r.txt"
    done
  fi
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
# Each round's own ratio (its two kinds ran in the same launch, or minutes apart at most): the median and the spread.
pairs = []
for r in range(1, rounds + 1):
    got = [re.search(r"step: median ([0-9.]+) ms", open(f"{out}/{m}.{r}.txt").read()) for m in ("ddp", "ft")]
    if all(got): pairs.append(float(got[1].group(1)) / float(got[0].group(1)) - 1)
if pairs:
    print(f"per-round overhead: median {100 * statistics.median(pairs):+.2f}% "
          f"[{100 * min(pairs):+.2f}% .. {100 * max(pairs):+.2f}%] over {len(pairs)} rounds "
          f"({', '.join(f'{100 * p:+.2f}%' for p in pairs)})")
PY
