#!/usr/bin/env bash
# README's headline table in one command: this machine's limits, then float32 allreduce at 8 B, 4 KiB,
# 1 MiB and 64 MiB on 2 and 4 ranks, choir over TCP and over shared memory (ordinary arrays and pg.alloc
# buffers) against torch Gloo (TCP) and Open MPI at its best (default, each coll_tuned algorithm, coll
# ^tuned; over TCP and over shared memory), ROUNDS (default 5) interleaved rounds of fresh launches.
# Needs Debian's python3-torch, python3-mpi4py, openmpi-bin and gcc. Run it on a quiet machine.
# The Markdown table on stdout (and in $OUT_DIR/table.md); JSON lines, plots and HTML reports in
# $OUT_DIR (default /tmp/choir-headline).
set -u
cd "$(dirname "$0")/../.."
out=${OUT_DIR:-/tmp/choir-headline}
mkdir -p "$out"
export NO_COLOR=1
deno=(deno)
command -v deno >/dev/null 2>&1 || deno=(npx -y deno@2.9.6)
code=0
"${deno[@]}" task bench --limits --json "$out/limits.json" >&2 || code=$?
for n in 2 4; do
  timeout 5400 "${deno[@]}" task bench --compare --nproc "$n" --op allreduce --sizes "${SIZES:-8,4K,1M,64M}" \
    --transport tcp,shm --buffers both --rounds "${ROUNDS:-5}" --budget "${BUDGET:-0.5}" \
    --json "$out/n$n.jsonl" --plot "$out/n$n.svg" --html "$out/n$n.html" >"$out/n$n.txt" || code=$?
done
"${deno[@]}" run --allow-read bench/headline.ts "$out" | tee "$out/table.md"
exit $code
