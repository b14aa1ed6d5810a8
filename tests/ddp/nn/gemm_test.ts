/**
 * @module
 * sgemm against a naive triple loop, for every transpose combination, through OpenBLAS (when it
 * loads) and through the JS fallback.
 */

import assert from "node:assert/strict";
import { gemmBackend, setGemmBlasEnabled, sgemm, sgemmJs } from "../../../ddp/nn/gemm.ts";
import { seededRandom } from "../../../ddp/nn/rng.ts";

function rand(n: number, seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

function naive(
  tA: boolean,
  tB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  A: Float32Array,
  B: Float32Array,
  beta: number,
  C: Float32Array,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        s += (tA ? A[p * m + i] : A[i * k + p]) * (tB ? B[j * k + p] : B[p * n + j]);
      }
      out[i * n + j] = alpha * s + beta * C[i * n + j];
    }
  }
  return out;
}

const SHAPES: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [17, 33, 129], [64, 10, 300], [5, 1, 2]];

function checkAll(run: typeof sgemm): void {
  let seed = 1;
  for (const [m, n, k] of SHAPES) {
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        for (const [alpha, beta] of [[1, 0], [0.5, 1], [-2, 0.25]]) {
          const A = rand(m * k, seed++), B = rand(k * n, seed++), C = rand(m * n, seed++);
          const want = naive(tA, tB, m, n, k, alpha, A, B, beta, C);
          run(tA, tB, m, n, k, alpha, A, B, beta, C);
          for (let i = 0; i < want.length; i++) {
            assert.ok(
              Math.abs(C[i] - want[i]) <= 1e-4 * (1 + Math.abs(want[i])) * Math.sqrt(k),
              `m=${m} n=${n} k=${k} tA=${tA} tB=${tB} alpha=${alpha} beta=${beta} [${i}]: ${C[i]} vs ${
                want[i]
              }`,
            );
          }
        }
      }
    }
  }
}

Deno.test("sgemm JS fallback matches the naive product", () => {
  checkAll(sgemmJs);
});

// Decided before the tests run (OpenBLAS is on by default): without it the OpenBLAS test is ignored.
const noBlas = gemmBackend() !== "openblas";
if (noBlas) {
  console.log(
    "gemm_test.ts: skipped: libopenblas.so.0 could not be opened (Debian: libopenblas0) or --allow-ffi is not given; the OpenBLAS sgemm test is ignored",
  );
}

Deno.test({
  name: "sgemm with OpenBLAS matches the naive product",
  ignore: noBlas,
  fn: () => {
    setGemmBlasEnabled(true);
    assert.equal(gemmBackend(), "openblas");
    checkAll(sgemm);
  },
});

Deno.test("sgemm falls back to JS when OpenBLAS is disabled", () => {
  setGemmBlasEnabled(false);
  try {
    assert.equal(gemmBackend(), "js");
    checkAll(sgemm);
  } finally {
    setGemmBlasEnabled(true);
  }
});

Deno.test("sgemm with beta 0 ignores NaN in C and rejects short arrays", () => {
  const C = new Float32Array([NaN, NaN]);
  sgemm(false, false, 1, 2, 1, 1, new Float32Array([2]), new Float32Array([3, 4]), 0, C);
  assert.deepEqual([...C], [6, 8]);
  assert.throws(() => sgemm(false, false, 2, 2, 2, 1, new Float32Array(3), new Float32Array(4), 0, C));
});
