#!/usr/bin/env bash
# Interleaved rounds: choir and torch.distributed Gloo allreduce at 8 B and 64 MiB, n=2 and n=4.
# Needs ../shared/anchors beside the repo and Debian python3-torch. Output: $OUT (default /tmp).
cd "$(dirname "$0")/../.."
PY=$(bash ../shared/anchors/pick_python.sh)
out=${OUT:-/tmp/choir-headline.txt}; : > "$out"
for round in 1 2 3; do
  for n in 2 4; do
    NO_COLOR=1 timeout 200 deno task bench --transport tcp --nproc $n --ops allreduce --min 8 --max 64M --factor 8388608 --budget 1 2>/dev/null \
      | awk -v r=$round -v n=$n '$1 ~ /^[0-9]+$/ {print "choir round " r " n=" n " bytes=" $1 " time_us=" $6 " busbw=" $8}' >> "$out"
    (cd ../shared/anchors && timeout 300 $PY torch_gloo_bench.py --world $n --ops allreduce --sizes 8,64M 2>/dev/null) \
      | awk -v r=$round -v n=$n '/torch-gloo/ {print "gloo  round " r " n=" n " " $5 " median_us=" $9 " busbw=" $(NF-1)}' >> "$out"
  done
done
cat "$out"
