#!/usr/bin/env bash
# Before/after of two checkouts on the same rows: ROUNDS (default 5) rounds, each in its own hold of the
# shared CPU lock, the order of the two alternating; the "after" arm also runs --compare (Open MPI at its
# best; Gloo is hidden when HIDE_TORCH=1; BOTH=1 runs it in both arms). Then bench/compare/ab_trees.py prints the table.
# Usage: [TRANSPORT=shm|tcp] bench/compare/ab_trees.sh BEFORE_DIR AFTER_DIR OUT_DIR NPROC SIZES
# e.g. bench/compare/ab_trees.sh /work/wt-base /work/wt-shm /tmp/ab2 2 8,256,4K,64K,1M,16M,64M
set -u
before=$1 after=$2 out=$3 nproc=$4 sizes=$5
mkdir -p "$out"
py=()
if [ "${HIDE_TORCH:-1}" = 1 ]; then
  mkdir -p "$out/notorch/torch"
  echo 'raise ImportError("hidden by ab_trees.sh")' >"$out/notorch/torch/__init__.py"
  printf '#!/bin/sh\nPYTHONPATH=%s exec /usr/bin/python3 "$@"\n' "$out/notorch" >"$out/python"
  chmod +x "$out/python"
  py=(--python "$out/python")
fi
if [ "${AB_ROUND:-}" != "" ]; then
  # One round, both arms, inside one hold of the lock (the caller below holds it).
  r=$AB_ROUND
  order=(before after)
  ((r % 2 == 0)) && order=(after before)
  for arm in "${order[@]}"; do
    if [ "$arm" = before ]; then dir=$before extra=(); else dir=$after extra=(--compare "${py[@]}"); fi
    # BOTH=1: both arms run --compare, so that Open MPI's ranks run beside each arm alike.
    if [ "${BOTH:-0}" = 1 ]; then extra=(--compare "${py[@]}"); fi
    (cd "$dir" && deno task bench --no-progress --op allreduce --transport "${TRANSPORT:-shm}" --nproc "$nproc" \
      --sizes "$sizes" --budget "${BUDGET:-0.2}" "${extra[@]}" --json "$out/$arm.r$r.jsonl" \
      >"$out/$arm.r$r.out" 2>"$out/$arm.r$r.err") || echo "round $r $arm failed" >&2
  done
  exit 0
fi
for r in $(seq 1 "${ROUNDS:-5}"); do
  AB_ROUND=$r flock /tmp/choir-cpu.lock bash "$0" "$@"
done
python3 "$(dirname "$0")/ab_trees.py" "$out"
