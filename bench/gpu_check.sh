#!/usr/bin/env bash
# The GPU run of issue 9, once, on a machine with an NVIDIA GPU, its driver and PyTorch but no Deno and
# no registry. Prepare .device/ first where Deno is (bench/gpu_pack.sh), carry it, then run:
#   bash bench/gpu_check.sh [.device] [output-dir]      (output-dir defaults to $OUT, else gpu_results/)
# Correctness (against CPU float64 references): every PTX reduce kernel and cuBLAS call, collectives on
# GpuTensors with 2 and 4 ranks sharing the GPU through IPC and through staging, DDP MNIST on 2 ranks
# (GPU vs CPU accuracy). Speed, beside PyTorch on the same card: copy vs PTX SUM kernel, SGEMM/GemmEx
# 4096/8192 vs torch.matmul, IPC allreduce of 256 MiB on 2 ranks. About 4-6 minutes; every step has a
# time limit and the run a deadline (DEADLINE_S, default 420 s). Writes summary.md, results.jsonl, steps.txt and one log per step.
# Smaller runs (a smoke test, e.g. on the mock driver: CHOIR_CUDA_PATH/CHOIR_CUBLAS_PATH) through env:
#   LENGTHS='[1,1000]' MNIST_ARGS='--epochs 1' BENCH_ARGS='--mib 1 --gemm 64 --allreduce-mib 1' SKIP_TEST_GPU=1
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-.device}
OUTDIR=${2:-${OUT:-gpu_results}}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; rm -f /dev/shm/mockcuda_* 2>/dev/null' EXIT

xz -dc "$DEV/deno.xz" >"$tmp/deno" && chmod +x "$tmp/deno" || { echo "no $DEV/deno.xz" >&2; exit 1; }
tar -C "$tmp" -xJf "$DEV/deno_dir.tar.xz" || { echo "no $DEV/deno_dir.tar.xz" >&2; exit 1; }
export DENO_DIR="$tmp/deno_dir" DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 PATH="$tmp:$PATH"
D="$tmp/deno"
"$D" --version | head -1 >"$OUTDIR/versions.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' >>"$OUTDIR/versions.txt" 2>&1
nvidia-smi >"$OUTDIR/nvidia-smi.txt" 2>&1
rm -f "$OUTDIR/results.jsonl" "$OUTDIR/steps.txt"
# Use the cuBLAS PyTorch uses, so the GEMM comparison is the same library on both sides.
if [ -z "${CHOIR_CUBLAS_PATH:-}" ]; then
  TORCH_CUBLAS=$(python3 - <<'PY' 2>/dev/null
import glob, os
for mod in ("nvidia.cublas", "nvidia.cu13", "nvidia.cu12", "torch"):
    try:
        m = __import__(mod, fromlist=["x"])
    except Exception:
        continue
    for d in list(getattr(m, "__path__", [])) + [os.path.dirname(getattr(m, "__file__", "") or "")]:
        hits = sorted(glob.glob(os.path.join(d, "lib", "libcublas.so.*")))
        if hits:
            print(hits[-1]); raise SystemExit
PY
  )
  [ -n "$TORCH_CUBLAS" ] && export CHOIR_CUBLAS_PATH="$TORCH_CUBLAS"
fi
echo "CHOIR_CUBLAS_PATH=${CHOIR_CUBLAS_PATH:-}" >>"$OUTDIR/versions.txt"

summarize() {
  python3 - "$OUTDIR" >"$OUTDIR/summary.md" 2>&1 <<'PY'
import json, re, sys, pathlib
out = pathlib.Path(sys.argv[1])
def text(name):
    p = out / f"{name}.log"
    return p.read_text(errors="replace") if p.exists() else ""
print("# choir GPU run (issue 9)\n")
print("```\n" + (out / "versions.txt").read_text() + (out / "steps.txt").read_text() + "```\n")
env = [l for l in text("env").splitlines() if l.startswith("{")]
if env: print("Device: `" + env[-1] + "`\n")
rcs = dict((l.split()[0], l.split()[1]) for l in (out / "steps.txt").read_text().splitlines() if l.strip())
bad = [f"{k} ({v})" for k, v in rcs.items() if v != "rc=0"]
print("**Steps that failed (see their logs): " + ", ".join(bad) + "**\n" if bad else "Every step exited 0.\n")
print("## Correctness\n")
for name in ["unit", "coll_2_ipc_shm", "coll_2_staged_tcp", "coll_4_ipc_tcp", "coll_4_staged_shm", "ddp_unit"]:
    res = [json.loads(l[l.index("RESULT ") + 7:]) for l in text(name).splitlines() if "RESULT " in l]
    checks = sum(r["checks"] for r in res); fails = [f for r in res for f in r["failures"]]
    print(f"- {name}: {len(res)} process(es), {checks} checks, {len(fails)} failures" + (f": {fails[:5]}" if fails else ""))
for name in ["ddp_gpu", "ddp_cpu"]:
    m = re.findall(r"final: .*", text(name))
    print(f"- {name}: {m[-1] if m else 'no final line (see log)'}")
tg = re.findall(r"ok \| .*|FAILED \| .*", text("test_gpu"))
print(f"- deno task test:gpu: {tg[-1] if tg else 'no summary (see test_gpu.log)'}")
print("\n## Speed (median of CUDA-event timings, same card)\n")
rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines() if l.strip()] if (out / "results.jsonl").exists() else []
def get(impl, op, key=None, val=None):
    for r in rows:
        if r.get("impl", "torch") == impl and r.get("op") == op and (key is None or r.get(key) == val): return r
print("| what | choir | torch | choir / torch |\n|---|---|---|---|")
for mib in (64, 256, 1024):
    b = mib << 20
    c, t = get("choir", "d2d_copy", "bytes", b), get("torch", "d2d_copy", "bytes", b)
    k = get("choir", "add_inplace_f32", "bytes", b); tk = get("torch", "add_inplace_f32", "bytes", b)
    if c: print(f"| D2D copy {mib} MiB GB/s | {c['GBps']:.0f} | {t['GBps']:.0f} | |" if t else f"| D2D copy {mib} MiB GB/s | {c['GBps']:.0f} | - | |")
    if k and c: print(f"| PTX SUM x+=y {mib} MiB GB/s (vs choir copy: {100*k['GBps']/c['GBps']:.0f}%) | {k['GBps']:.0f} | {tk['GBps']:.0f} | {k['GBps']/tk['GBps']:.2f} |" if tk else f"| PTX SUM {mib} MiB GB/s | {k['GBps']:.0f} | - | |")
for cop, top in (("matmul_float32", "matmul_float32"), ("matmul_bfloat16", "matmul_bfloat16"), ("matmul_float16", None)):
    for n in (4096, 8192):
        c = get("choir", cop, "n", n); t = get("torch", top, "n", n) if top else None
        if c: print(f"| {cop} n={n} ms | {c['s']*1e3:.2f} | {t['s']*1e3:.2f} | {c['s']/t['s']:.3f} |" if t else f"| {cop} n={n} ms | {c['s']*1e3:.2f} | - | |")
copy = get("choir", "d2d_copy", "bytes", 256 << 20)
for op in ("allreduce_ipc", "allreduce_staged"):
    r = get("choir", op)
    if r and "busGBps" in r:
        rel = f" ({100 * r['busGBps'] / copy['GBps']:.0f}% of D2D copy)" if copy else ""
        print(f"| {op} 2 ranks {r['bytes'] >> 20} MiB busbw GB/s{rel}, correct={r['correct']} | {r['busGBps']:.1f} | n/a (NCCL refuses 2 ranks/GPU) | |")
    elif r: print(f"| {op} | {r} | | |")
PY
}

# The whole run stops starting steps after DEADLINE_S seconds (default 420: the device time is short);
# each step's limit is capped by what is left, and summary.md is rewritten after every step, so a run cut
# off from outside still leaves its results.
START=$(date +%s)
DEADLINE_S=${DEADLINE_S:-420}
# step NAME LIMIT_S CMD...: runs with a time limit, log in NAME.log, rc and seconds in steps.txt.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE_S - ($(date +%s) - START)))
  if [ "$left" -lt 10 ]; then
    echo "$name rc=skipped(out-of-time) 0s" | tee -a "$OUTDIR/steps.txt"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" >"$OUTDIR/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $(($(date +%s) - t0))s" | tee -a "$OUTDIR/steps.txt"
  summarize
}

step env 60 "$D" eval 'import * as g from "./gpu/mod.ts"; console.log(JSON.stringify({ available: g.cudaAvailable(),
  driver: g.driverVersion(), devices: g.deviceCount(), info: g.deviceInfo(0), cublas: g.cublasLibrary(),
  cublasVersion: g.cublas(0).version() }))'
step doctor 30 "$D" run -A doctor.ts
step unit 120 "$D" run -A tests/fixtures/gpu_unit_check.ts

W=tests/fixtures/gpu_collective_worker.ts
# The largest length spans several staged chunks (chunkBytes below) and every rank's IPC slice; larger
# ones only slow the float64 reference in JS. The 256 MiB benchmark checks its result too.
L=${LENGTHS:-'[1, 1000, 70001, 262147]'}
step coll_2_ipc_shm 90 env CHOIR_TRANSPORT=shm "$D" run -A launch/mod.ts --nproc-per-node 2 $W \
  "{\"path\":\"ipc\",\"lengths\":$L}"
step coll_2_staged_tcp 90 env CHOIR_TRANSPORT=tcp "$D" run -A launch/mod.ts --nproc-per-node 2 $W \
  "{\"path\":\"staged\",\"lengths\":$L,\"others\":true,\"chunkBytes\":262144}"
step coll_4_ipc_tcp 90 env CHOIR_TRANSPORT=tcp "$D" run -A launch/mod.ts --nproc-per-node 4 $W \
  "{\"path\":\"ipc\",\"lengths\":$L}"
step coll_4_staged_shm 90 env CHOIR_TRANSPORT=shm "$D" run -A launch/mod.ts --nproc-per-node 4 $W \
  "{\"path\":\"staged\",\"lengths\":$L,\"others\":true,\"chunkBytes\":262144}"

step bench_choir 150 "$D" run -A bench/gpu_bench.ts --out "$OUTDIR/results.jsonl" ${BENCH_ARGS:-}
if [ -f "$DEV/gpu_torch_anchor.py" ]; then
  step bench_torch 120 python3 "$DEV/gpu_torch_anchor.py" --out "$OUTDIR/results.jsonl"
fi
# DDP last but one: the CPU run's accuracy is also known from examples/train_mnist.ts's header.
step ddp_unit 90 env CHOIR_TRANSPORT=shm "$D" run -A launch/mod.ts --nproc-per-node 2 \
  tests/fixtures/ddp_gpu_worker.ts '{"view":true}'
step ddp_gpu 150 "$D" run -A launch/mod.ts --nproc-per-node 2 examples/train_mnist.ts --device cuda ${MNIST_ARGS:-}
step ddp_cpu 150 "$D" run -A launch/mod.ts --nproc-per-node 2 examples/train_mnist.ts ${MNIST_ARGS:-}
[ -n "${SKIP_TEST_GPU:-}" ] || step test_gpu 150 "$D" test -A tests/gpu/

cat "$OUTDIR/summary.md"
