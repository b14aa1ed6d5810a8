/**
 * @module
 * Optional OpenBLAS (`libopenblas.so.0`) through Deno FFI for f32/f64 SUM (`?axpy`) and scaling
 * (`?scal`) in place on any typed array. When the library or FFI permission is missing, it reports
 * unavailable and callers fall back to WASM/JS; choosing when to use it is left to `reduce.ts`.
 */

import { openOpenBlas } from "./openblas.ts";

const SYMBOLS = {
  cblas_saxpy: { parameters: ["i32", "f32", "buffer", "i32", "buffer", "i32"], result: "void" },
  cblas_daxpy: { parameters: ["i32", "f64", "buffer", "i32", "buffer", "i32"], result: "void" },
  cblas_sscal: { parameters: ["i32", "f32", "buffer", "i32"], result: "void" },
  cblas_dscal: { parameters: ["i32", "f64", "buffer", "i32"], result: "void" },
} as const;

type Blas = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** The most elements one cblas call takes (its count is a C int). */
const MAX_CALL = 2 ** 31 - 1;

let lib: Blas | null | undefined; // undefined: not tried yet; null: unavailable
let enabled = true;

function load(): Blas | null {
  if (lib === undefined) lib = openOpenBlas(SYMBOLS);
  return lib;
}

/** Whether the OpenBLAS path is usable now: the library loaded, FFI is permitted and it is enabled. */
export function blasAvailable(): boolean {
  return enabled && load() !== null;
}

/** Turns the OpenBLAS path on or off (off forces the WASM/JS paths, e.g. in tests). Default on. */
export function setBlasEnabled(on: boolean): void {
  enabled = on;
}

/** `y += alpha * x` over all of `y` (x as long as y); false if OpenBLAS is unavailable. */
export function blasAxpy(alpha: number, x: Float32Array | Float64Array, y: typeof x): boolean {
  const b = enabled ? load() : null;
  if (b === null) return false;
  const f32 = y instanceof Float32Array;
  for (let off = 0; off < y.length; off += MAX_CALL) {
    const n = Math.min(MAX_CALL, y.length - off);
    const xs = off === 0 && n === x.length ? x : x.subarray(off, off + n);
    const ys = off === 0 && n === y.length ? y : y.subarray(off, off + n);
    if (f32) b.cblas_saxpy(n, alpha, xs, 1, ys, 1);
    else b.cblas_daxpy(n, alpha, xs, 1, ys, 1);
  }
  return true;
}

/** `x *= alpha` over all of `x`; false if OpenBLAS is unavailable. */
export function blasScal(alpha: number, x: Float32Array | Float64Array): boolean {
  const b = enabled ? load() : null;
  if (b === null) return false;
  const f32 = x instanceof Float32Array;
  for (let off = 0; off < x.length; off += MAX_CALL) {
    const n = Math.min(MAX_CALL, x.length - off);
    const xs = off === 0 && n === x.length ? x : x.subarray(off, off + n);
    if (f32) b.cblas_sscal(n, alpha, xs, 1);
    else b.cblas_dscal(n, alpha, xs, 1);
  }
  return true;
}
