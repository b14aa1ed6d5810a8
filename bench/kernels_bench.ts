/**
 * @module
 * Micro-benchmark of the reduce kernel paths (`deno bench --allow-all bench/kernels_bench.ts`): wasm on
 * data in its memory, OpenBLAS saxpy, a plain JS loop and the `reduceInto` dispatch, 64 MiB per array.
 * GB/s = 64 MiB (one array's bytes) / time per iteration: 64 MiB in 10 ms is 6.7 GB/s. Keep runs short
 * on the shared 2-core machines.
 */

import { reduceInto, setBlasEnabled, WasmReducer } from "../collectives/kernels/mod.ts";

const BYTES = 64 * 2 ** 20;
const N = BYTES / 4;
const BIG = { n: 10, warmup: 2 };

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = ((i * 7919 + seed) % 1000) / 64;
  return a;
}

const dst = filled(N, 1), src = filled(N, 2);
const inMemory = WasmReducer.create({ initialPages: (2 * BYTES) / 65536 + 1 });
new Float32Array(inMemory.memory.buffer, 0, N).set(dst);
new Float32Array(inMemory.memory.buffer, BYTES, N).set(src);

Deno.bench({
  name: "wasm in-memory f32 sum 64 MiB",
  group: "f32 sum 64 MiB",
  baseline: true,
  ...BIG,
  fn: () => inMemory.reduce("f32", "sum", 0, BYTES, N),
});

Deno.bench({
  name: "reduceInto f32 sum 64 MiB (OpenBLAS saxpy when installed)",
  group: "f32 sum 64 MiB",
  ...BIG,
  fn: () => reduceInto("f32", "sum", dst, src),
});

Deno.bench({
  name: "reduceInto f32 sum 64 MiB, OpenBLAS off (staged wasm)",
  group: "f32 sum 64 MiB",
  ...BIG,
  fn: () => {
    setBlasEnabled(false);
    reduceInto("f32", "sum", dst, src);
    setBlasEnabled(true);
  },
});

Deno.bench({
  name: "JS loop f32 sum 64 MiB",
  group: "f32 sum 64 MiB",
  ...BIG,
  fn: () => {
    for (let i = 0; i < N; i++) dst[i] += src[i];
  },
});

Deno.bench({
  name: "wasm in-memory f32 max 64 MiB",
  group: "f32 max 64 MiB",
  baseline: true,
  ...BIG,
  fn: () => inMemory.reduce("f32", "max", 0, BYTES, N),
});

Deno.bench({
  name: "reduceInto f32 max 64 MiB (staged wasm)",
  group: "f32 max 64 MiB",
  ...BIG,
  fn: () => reduceInto("f32", "max", dst, src),
});

Deno.bench({
  name: "JS loop f32 max 64 MiB",
  group: "f32 max 64 MiB",
  ...BIG,
  fn: () => {
    for (let i = 0; i < N; i++) dst[i] = Math.max(dst[i], src[i]);
  },
});

// ordinary values in both formats (1.0 + small steps); a dozen sums stay finite
const h = new Uint16Array(BYTES / 2).fill(0x3c00),
  hs = new Uint16Array(BYTES / 2).map((_, i) => 0x3800 + (i & 0xff));

Deno.bench({
  name: "reduceInto bf16 sum 64 MiB (staged wasm)",
  group: "half 64 MiB",
  ...BIG,
  fn: () => reduceInto("bf16", "sum", h, hs),
});

Deno.bench({
  name: "reduceInto f16 sum 64 MiB (staged wasm)",
  group: "half 64 MiB",
  ...BIG,
  fn: () => reduceInto("f16", "sum", h, hs),
});

const tinyD = new Float32Array(2), tinyS = new Float32Array(2).fill(1);
Deno.bench({
  name: "reduceInto f32 sum 8 B",
  group: "latency",
  fn: () => reduceInto("f32", "sum", tinyD, tinyS),
});

const midD = filled(4096, 3), midS = filled(4096, 4);
Deno.bench({
  name: "reduceInto f32 sum 16 KiB",
  group: "latency",
  fn: () => reduceInto("f32", "sum", midD, midS),
});
Deno.bench({
  name: "reduceInto f32 max 16 KiB",
  group: "latency",
  fn: () => reduceInto("f32", "max", midD, midS),
});
