#!/usr/bin/env bash
# The headline comparison in one command: float32 allreduce at 8 B and 64 MiB on 2 and 4 ranks,
# choir over TCP and over shared memory (ordinary arrays and pg.alloc buffers) against torch Gloo
# and Open MPI (over TCP and over shared memory), three interleaved rounds, medians reported.
# Needs Debian's python3-torch, python3-mpi4py and openmpi-bin (deno task bench --compare finds them).
# Tables on stdout; JSON lines, plots and HTML reports in $OUT_DIR (default /tmp/choir-headline).
set -u
cd "$(dirname "$0")/../.."
out=${OUT_DIR:-/tmp/choir-headline}
mkdir -p "$out"
code=0
for n in 2 4; do
  NO_COLOR=1 timeout 3600 deno task bench --compare --nproc "$n" --op allreduce --sizes 8,64M \
    --transport tcp,shm --buffers both --rounds "${ROUNDS:-3}" --budget 1 \
    --json "$out/n$n.jsonl" --plot "$out/n$n.svg" --html "$out/n$n.html" || code=$?
done
exit $code
