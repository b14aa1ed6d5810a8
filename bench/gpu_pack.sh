#!/usr/bin/env bash
# Prepares .device/ (git-ignored) for bench/gpu_check.sh, here, where Deno and the npm registry are:
#   .device/deno.xz              the Deno binary, xz -9 (the GPU machine has no Deno)
#   .device/deno_dir.tar.xz      a DENO_DIR holding every npm package the GPU checks import (no registry there)
#   .device/gpu_torch_anchor.py  PyTorch's numbers on the same card (../shared/anchors, or ANCHOR=path)
# Then carry `.device` to the GPU machine and run bench/gpu_check.sh there (see docs/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DENO=${DENO:-$(command -v deno)}
ANCHOR=${ANCHOR:-../shared/anchors/gpu_torch_anchor.py}
[ -f "$ANCHOR" ] || ANCHOR=/work/shared/anchors/gpu_torch_anchor.py
mkdir -p .device
xz -9 -T0 -c "$(readlink -f "$DENO")" >.device/deno.xz
rm -rf .device/deno_dir
DENO_DIR=.device/deno_dir "$DENO" cache --quiet tests/gpu/*.ts tests/fixtures/gpu_*.ts tests/fixtures/ddp_gpu_worker.ts bench/gpu_bench.ts \
  bench/gpu_allreduce_rank.ts examples/train_mnist.ts examples/train_mnist_gpu.ts launch/mod.ts
# Transpiled code and analysis caches are rebuilt there; only the npm packages must travel.
rm -rf .device/deno_dir/gen .device/deno_dir/*_cache_v2*
tar -C .device -cJf .device/deno_dir.tar.xz deno_dir
rm -rf .device/deno_dir
if [ -f "$ANCHOR" ]; then cp "$ANCHOR" .device/gpu_torch_anchor.py; else echo "no torch anchor at $ANCHOR" >&2; fi
du -ch .device/* | sed 's/^/  /'
