/**
 * @module
 * Single-precision matrix multiply for ddp/nn: OpenBLAS `cblas_sgemm` through Deno FFI when
 * `libopenblas.so.0` loads and `--allow-ffi` is granted (the library the SUM kernel of
 * `collectives/kernels/blas.ts` uses, loaded the same way), otherwise a JS loop kernel. Matrices are
 * dense and row-major.
 *
 * Threads: OpenBLAS is set to one thread, as in `blas.ts`: each rank is its own process and ranks
 * already occupy the cores, so OpenBLAS's threads would only fight them. {@link sgemmAsync} runs the
 * same product on Deno's FFI thread pool (`nonblocking`), so the calling thread's event loop stays
 * free meanwhile: DDP's bucket allreduces progress while backward's products compute.
 */

import { InvalidArgumentError } from "../../errors.ts";
import { openOpenBlas } from "../../collectives/kernels/openblas.ts";

const SGEMM_PARAMETERS = [
  "i32", // order
  "i32", // transA
  "i32", // transB
  "i32", // m
  "i32", // n
  "i32", // k
  "f32", // alpha
  "buffer", // A
  "i32", // lda
  "buffer", // B
  "i32", // ldb
  "f32", // beta
  "buffer", // C
  "i32", // ldc
] as const;

const SYMBOLS = {
  cblas_sgemm: { parameters: SGEMM_PARAMETERS, result: "void" },
  // The same function on Deno's FFI thread pool: a promise, ~10-40 us of overhead per call.
  cblas_sgemm_nonblocking: {
    name: "cblas_sgemm",
    parameters: SGEMM_PARAMETERS,
    result: "void",
    nonblocking: true,
  },
} as const;

type Sgemm = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const ROW_MAJOR = 101;
const NO_TRANS = 111;
const TRANS = 112;
const MAX_INT = 2 ** 31 - 1;

let lib: Sgemm | null | undefined; // undefined: not tried; null: unavailable
let enabled = true;

function load(): Sgemm | null {
  if (lib === undefined) lib = openOpenBlas(SYMBOLS);
  return lib;
}

/** Which kernel {@link sgemm} runs now: `"openblas"` (FFI) or `"js"` (the fallback). */
export function gemmBackend(): "openblas" | "js" {
  return enabled && load() !== null ? "openblas" : "js";
}

/** Turns the OpenBLAS path on or off (off forces the JS kernel, e.g. in tests). Default on. */
export function setGemmBlasEnabled(on: boolean): void {
  enabled = on;
}

/**
 * `C = alpha * op(A) * op(B) + beta * C`, row-major, where op(A) is m x k, op(B) is k x n and C is
 * m x n. With `transA`, A is stored k x m; with `transB`, B is stored n x k. With `beta` 0, C is
 * overwritten (its old values, even NaN, are ignored).
 */
export function sgemm(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  A: Float32Array,
  B: Float32Array,
  beta: number,
  C: Float32Array,
): void {
  const b = blasFor(m, n, k, A, B, C);
  if (b === "done") {
    if (m > 0 && n > 0) scale(C, m * n, beta);
  } else if (b !== null) {
    b.cblas_sgemm(...blasArgs([transA, transB, m, n, k, alpha, A, B, beta, C]));
  } else sgemmJs(transA, transB, m, n, k, alpha, A, B, beta, C);
}

/**
 * {@link sgemm} off the calling thread: with OpenBLAS the product runs on Deno's FFI thread pool and
 * the returned promise settles when it is done, so the event loop (a collective in flight, say) runs
 * meanwhile. A, B and C must not be touched until then. Without OpenBLAS it computes at once (JS).
 */
export async function sgemmAsync(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  A: Float32Array,
  B: Float32Array,
  beta: number,
  C: Float32Array,
): Promise<void> {
  const b = blasFor(m, n, k, A, B, C);
  if (b === "done" || b === null) sgemm(transA, transB, m, n, k, alpha, A, B, beta, C);
  else await b.cblas_sgemm_nonblocking(...blasArgs([transA, transB, m, n, k, alpha, A, B, beta, C]));
}

/** Checks sizes; OpenBLAS when it applies, null for the JS kernel, "done" when only C's scaling is left. */
function blasFor(
  m: number,
  n: number,
  k: number,
  A: Float32Array,
  B: Float32Array,
  C: Float32Array,
): Sgemm | null | "done" {
  if (m * k > A.length || k * n > B.length || m * n > C.length) {
    throw new InvalidArgumentError(
      `sgemm: arrays too small for m=${m} n=${n} k=${k} (A ${A.length}, B ${B.length}, C ${C.length})`,
      { op: "sgemm" },
    );
  }
  if (m === 0 || n === 0 || k === 0) return "done";
  const b = enabled ? load() : null;
  return b !== null && m * k <= MAX_INT && k * n <= MAX_INT && m * n <= MAX_INT ? b : null;
}

/** {@link sgemm}'s arguments as cblas_sgemm takes them (row-major, leading dimensions). */
function blasArgs(
  [transA, transB, m, n, k, alpha, A, B, beta, C]: Parameters<typeof sgemm>,
) {
  return [
    ROW_MAJOR,
    transA ? TRANS : NO_TRANS,
    transB ? TRANS : NO_TRANS,
    m,
    n,
    k,
    alpha,
    A,
    transA ? m : k,
    B,
    transB ? k : n,
    beta,
    C,
    n,
  ] as const;
}

function scale(C: Float32Array, len: number, beta: number): void {
  if (beta === 0) C.fill(0, 0, len);
  else if (beta !== 1) { for (let i = 0; i < len; i++) C[i] *= beta; }
}

/** Rows of C per block of the JS kernel, so a block of C stays in cache while B streams past. */
const ROW_BLOCK = 16;
/** Depth of a block of the JS kernel (rows of op(B) per pass). */
const K_BLOCK = 128;

/** The JS fallback of {@link sgemm} (exported for tests); same contract. */
export function sgemmJs(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  A: Float32Array,
  B: Float32Array,
  beta: number,
  C: Float32Array,
): void {
  scale(C, m * n, beta);
  if (alpha === 0 || k === 0) return;
  if (transB) {
    // op(B)[p][j] = B[j*k + p]: rows of A and B are both contiguous along p, so use dot products.
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        const bo = j * k;
        let s = 0;
        if (transA) { for (let p = 0; p < k; p++) s += A[p * m + i] * B[bo + p]; }
        else {
          const ao = i * k;
          for (let p = 0; p < k; p++) s += A[ao + p] * B[bo + p];
        }
        C[i * n + j] += alpha * s;
      }
    }
    return;
  }
  // op(B) rows are contiguous: C[i, :] += a(i,p) * B[p, :], blocked over rows of C and over p.
  for (let i0 = 0; i0 < m; i0 += ROW_BLOCK) {
    const i1 = Math.min(m, i0 + ROW_BLOCK);
    for (let p0 = 0; p0 < k; p0 += K_BLOCK) {
      const p1 = Math.min(k, p0 + K_BLOCK);
      for (let i = i0; i < i1; i++) {
        const co = i * n;
        for (let p = p0; p < p1; p++) {
          const a = alpha * (transA ? A[p * m + i] : A[i * k + p]);
          if (a === 0) continue;
          const bo = p * n;
          for (let j = 0; j < n; j++) C[co + j] += a * B[bo + j];
        }
      }
    }
  }
}
