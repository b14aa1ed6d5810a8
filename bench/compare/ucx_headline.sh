#!/usr/bin/env bash
# choir over UCX beside UCX's own benchmark and Open MPI's UCX variant, in one run on this machine:
#   1. tag bandwidth at 64 MiB between 2 processes: ucx_perftest -t tag_bw vs choir pg.send/pg.recv
#      over CHOIR_TRANSPORT=ucx (bench/ucx_tag_bw.ts); 3 runs each, medians; target choir >= 0.8x.
#   2. float32 allreduce busbw at 64 MiB, 2 ranks (NPROC to change): choir over UCX vs Open MPI with
#      pml ucx (deno task bench --compare, 3 interleaved rounds, median round); target choir >= Open MPI.
# UCX_TLS / UCX_NET_DEVICES, when set, apply to every side alike. Needs ucx-utils (ucx_perftest),
# openmpi-bin + python3-mpi4py + python3-numpy (Open MPI side); wrap it in flock /work/bench.lock.
# Usage: bash bench/compare/ucx_headline.sh      (about 2 minutes; OUT_DIR keeps the logs)
set -u
cd "$(dirname "$0")/../.."
out=${OUT_DIR:-/tmp/choir-ucx-headline}
mkdir -p "$out"
port=${PORT:-13471}
size=$((64 << 20))
iters=${ITERS:-20}
median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR + 1) / 2)] : "nan")}'; }

echo "# ucx_headline: $(date -u +%FT%TZ), $(nproc) cores, UCX_TLS=${UCX_TLS:-<UCX default>}"
command -v ucx_perftest >/dev/null || { echo "ucx_perftest not found (Debian: apt-get install ucx-utils)"; exit 2; }

echo "## 1. tag bandwidth, 64 MiB messages, 2 processes on localhost (MB/s = 2^20 B/s)"
: > "$out/perftest.txt"
for r in 1 2 3; do
  ucx_perftest -p "$port" > "$out/perftest_srv_$r.txt" 2>&1 &
  srv=$!
  sleep 1
  timeout 120 ucx_perftest 127.0.0.1 -p "$port" -t tag_bw -s "$size" -n "$iters" -w 3 -f \
    > "$out/perftest_cli_$r.txt" 2>&1
  wait "$srv"
  # Last numbers row: iterations, latency p50/avg/overall, bandwidth avg/overall (MB/s), rates.
  grep -E '^ +[0-9]+ +[0-9.]+' "$out/perftest_cli_$r.txt" | tail -1 | awk '{print $6}' >> "$out/perftest.txt"
done
perf=$(median < "$out/perftest.txt")
echo "ucx_perftest tag_bw runs (MB/s): $(tr '\n' ' ' < "$out/perftest.txt")-> median $perf"

NO_COLOR=1 CHOIR_TRANSPORT=ucx timeout 300 deno task launch --nproc-per-node 2 bench/ucx_tag_bw.ts \
  "$size" "$iters" 3 > "$out/choir_tagbw.txt" 2>&1
line=$(grep -o 'TAGBW .*' "$out/choir_tagbw.txt" | tail -1)
choir=$(echo "$line" | sed -E 's/.*"medianMBps":([0-9.]+).*/\1/')
echo "choir pg.send/recv over ucx runs: ${line#TAGBW } -> median $choir"
awk -v c="$choir" -v p="$perf" 'BEGIN { if (p > 0 && c > 0) printf "tag bw ratio choir/ucx_perftest: %.2fx (target >= 0.80x)\n", c / p; else print "tag bw ratio: n/a" }'

echo "## 2. allreduce float32 64 MiB, ${NPROC:-2} ranks: choir over ucx vs Open MPI pml ucx (and Gloo)"
NO_COLOR=1 timeout 900 deno task bench --compare --transport ucx --nproc "${NPROC:-2}" --op allreduce \
  --sizes 64M --rounds 3 --budget 1 --json "$out/allreduce.jsonl" 2>"$out/allreduce.log" | tee "$out/allreduce.txt"
grep -E '^\[choir ucx rank 0\] ucx:' "$out/allreduce.log" | sed 's/^\[choir ucx rank 0\] //' | sort -u
python3 - "$out/allreduce.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bus = {r.get('series', r.get('label')): r['busbw'] for r in rows if r.get('size') == 64 << 20 or r.get('bytes') == 64 << 20}
for k, v in bus.items():
    print('busbw %-14s %.2f GB/s' % (k, v))
c, m = bus.get('choir ucx'), bus.get('openmpi ucx')
if c and m:
    print('allreduce busbw ratio choir ucx / openmpi ucx: %.2fx (target >= 1.00x)' % (c / m))
PY
