#!/usr/bin/env bash
# Interleaved rounds: choir over shared memory (ordinary arrays, then pg.alloc buffers) and Open MPI's
# shared-memory allreduce (mpi4py, its
# default vader BTL) at 8 B and 64 MiB, n=2 and n=4. Needs ../shared/anchors beside the repo and
# Debian openmpi-bin + python3-mpi4py. Output: $OUT (default /tmp/choir-headline-shm.txt).
cd "$(dirname "$0")/../.."
PY=$(bash ../shared/anchors/pick_python.sh)
out=${OUT:-/tmp/choir-headline-shm.txt}; : > "$out"
for round in 1 2 3; do
  for n in 2 4; do
    NO_COLOR=1 timeout 200 deno task bench --transport shm --nproc $n --ops allreduce --min 8 --max 64M --factor 8388608 --budget 1 2>/dev/null \
      | awk -v r=$round -v n=$n '$1 ~ /^[0-9]+$/ {print "choir round " r " n=" n " bytes=" $1 " time_us=" $6 " busbw=" $8}' >> "$out"
    NO_COLOR=1 timeout 200 deno task bench --transport shm --alloc --nproc $n --ops allreduce --min 8 --max 64M --factor 8388608 --budget 1 2>/dev/null \
      | awk -v r=$round -v n=$n '$1 ~ /^[0-9]+$/ {print "alloc round " r " n=" n " bytes=" $1 " time_us=" $6 " busbw=" $8}' >> "$out"
    (cd ../shared/anchors && timeout 300 mpirun --allow-run-as-root --oversubscribe -np $n $PY mpi4py_bench.py --variant default --ops allreduce --sizes 8,64M 2>/dev/null) \
      | awk -v r=$round -v n=$n '/openmpi/ {print "ompi  round " r " n=" n " " $5 " median_us=" $9 " busbw=" $(NF-1)}' >> "$out"
  done
done
cat "$out"
