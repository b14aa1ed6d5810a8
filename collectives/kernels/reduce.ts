/**
 * @module
 * The reduce entry points on ordinary typed arrays: check the arguments, then pick per (dtype, op,
 * length) the measured-fastest path: a JS loop, OpenBLAS, or the wasm SIMD kernels staged in blocks.
 */

import { InvalidArgumentError } from "../../errors.ts";
import { ARRAY_TYPE, type CpuTensor, type DType, opSupports, type ReduceOp } from "../../dtype.ts";
import { blasAvailable, blasAxpy, blasScal } from "./blas.ts";
import { jsDivide, jsReduce, jsScale } from "./js_kernels.ts";
import { stagedDivide, stagedReduce, stagedScale } from "./staged.ts";
import { kernelOpOf, WasmReducer } from "./wasm_reducer.ts";

type Real = Float32Array | Float64Array;

/** Which implementation a reduce call takes. */
export type ReducePath = "js" | "blas" | "wasm";

/*
 * Path choice, measured on the 2-core EPYC dev box (Deno 2.9.6, shared and noisy; GB/s of dst bytes,
 * best of 4, warm; "JS" is the loop in js_kernels.ts, "wasm" the staged SIMD kernels in staged.ts):
 *
 *   dtype op          1 MiB: JS  wasm    16 MiB: JS  wasm
 *   i32   sum/max          4.3   6.4            3.9   3.3
 *   i32   product          4.3   6.3            3.5   2.9
 *   u32   max              3.8   5.8            3.7   3.4
 *   f32   min              1.8   5.0            1.9   3.0
 *   f32   product          3.0   5.6            3.0   3.3
 *   f64   sum              8.5   6.2            5.1   3.3     (OpenBLAS daxpy when installed)
 *   f64   min/max          5.1   5.2            4.3   2.8
 *   f64   product          8.8   3.9-6.1        5.1   3.1
 *   i64   sum              7.1   6.4            5.4   3.3
 *   i64   max/min          7.6   5.8            6.2   3.1
 *   i64   product/band     6.7   4.8            5.0   2.7
 *   u8    sum/band         0.9   6.0            0.9   3.1
 *   bf16 / f16 sum       0.08 / 0.01  1.5 / 0.5  (64 MiB: wasm 1.6 / 0.75)
 *
 * So: f64 and i64 (8-byte elements, where V8's loop is tight) stay in JS; 32-bit and smaller types and
 * the half floats go to wasm; f32/f64 SUM go to OpenBLAS (64 MiB: saxpy 5.5 GB/s, staged wasm 2.9, JS
 * 2.4; wasm on data already in its memory 5.8). A first (cold) JS call runs unoptimised: 1 MiB in 1-8
 * ms against 0.5 ms staged; collectives call the kernels often, so warm numbers decide.
 */

/**
 * Below this many elements every call is a plain JS loop: no FFI call, no copies (tiny-message
 * latency). ns per call, f32 SUM: n=2 JS 8, cblas_saxpy 63; n=64 JS 115, saxpy 86; n=1024 JS 1466,
 * saxpy 227, staged wasm 810.
 */
const SMALL = 64;

/**
 * From this many elements the staged wasm kernels beat the JS loops for 32-bit numbers: staging costs
 * ~270 ns a call, JS loops ~1.1-1.6 ns an element (i32 MAX n=256: JS 310 ns, wasm 408; n=1024: JS
 * 1109, wasm 811). f16/bf16 (JS 20-100 ns an element) and i8/u8 (~1 ns a byte) stage from SMALL on.
 */
const STAGED_MIN = 256;

function pathFor(dtype: DType, op: ReduceOp, n: number): ReducePath {
  if (n < SMALL) return "js";
  const sum = op === "sum" || op === "avg" || op === "premul_sum";
  if (sum && (dtype === "f32" || dtype === "f64") && blasAvailable()) return "blas";
  if (dtype === "f64" || dtype === "i64") return "js";
  const from = dtype === "f16" || dtype === "bf16" || dtype === "u8" || dtype === "i8" ? SMALL : STAGED_MIN;
  return n >= from && WasmReducer.supports(dtype, op) ? "wasm" : "js";
}

/** Where scale and divide run: JS below the staging threshold, else wasm (or OpenBLAS for scaling). */
function unaryStaged(dtype: DType, n: number): boolean {
  if (n < SMALL) return false;
  return dtype === "f16" || dtype === "bf16" || dtype === "u8" || dtype === "i8" || n >= STAGED_MIN;
}

const CTOR = ARRAY_TYPE;

function checkArray(what: string, dtype: DType, t: CpuTensor, fn: string): void {
  const ctor = CTOR[dtype];
  if (!(t instanceof ctor)) {
    throw new InvalidArgumentError(
      `${what} is a ${Object.prototype.toString.call(t).slice(8, -1)}, dtype ${dtype} needs a ${ctor.name}`,
      { op: fn },
    );
  }
}

function isFloat(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f64" || dtype === "f16" || dtype === "bf16";
}

/** The path {@link reduceInto} takes for (`dtype`, `op`) on `length` elements (for plans and tests). */
export function reducePath(dtype: DType, op: ReduceOp, length: number): ReducePath {
  return opSupports(op, dtype) ? pathFor(dtype, op, length) : "js";
}

/**
 * In place `dst[i] = op(dst[i], src[i])` for every element. AVG and PREMUL_SUM add here (the
 * collective scales). Integer SUM and PRODUCT wrap (two's complement); float MIN/MAX propagate NaN
 * and order -0 below +0; f16/bf16 combine in f32 and round to nearest even. `dst` and `src` may be
 * the same array but must not otherwise overlap. Throws InvalidArgumentError for a bitwise op on
 * floats, PREMUL_SUM on integers, arrays not of `dtype`, or unequal lengths.
 */
export function reduceInto(dtype: DType, op: ReduceOp, dst: CpuTensor, src: CpuTensor): void {
  if (!opSupports(op, dtype)) {
    throw new InvalidArgumentError(`op ${op} is not defined for dtype ${dtype}`, { op: "reduceInto" });
  }
  checkArray("dst", dtype, dst, "reduceInto");
  checkArray("src", dtype, src, "reduceInto");
  const n = dst.length;
  if (src.length !== n) {
    throw new InvalidArgumentError(`dst has ${n} elements, src ${src.length}`, { op: "reduceInto" });
  }
  const path = pathFor(dtype, op, n);
  if (path === "blas" && blasAxpy(1, src as Real, dst as Real)) return;
  if (path === "wasm") return stagedReduce(dtype, op, dst, src);
  jsReduce(dtype, kernelOpOf(op), dst, src);
}

/**
 * In place `dst[i] *= factor` for a float dtype. f32, f16 and bf16 round `factor` to f32 and the
 * product to f32 (then f16/bf16 round to nearest even); f64 multiplies in f64.
 */
export function scaleInto(dtype: DType, dst: CpuTensor, factor: number): void {
  if (!isFloat(dtype)) {
    throw new InvalidArgumentError(`scaling needs a float dtype, got ${dtype}`, { op: "scaleInto" });
  }
  checkArray("dst", dtype, dst, "scaleInto");
  const n = dst.length;
  // OpenBLAS's ?scal may zero NaN/Inf entries when alpha is 0; keep IEEE results by skipping it then.
  const real = dtype === "f32" || dtype === "f64";
  if (real && n >= SMALL && factor !== 0 && Number.isFinite(factor) && blasScal(factor, dst as Real)) return;
  if (unaryStaged(dtype, n)) stagedScale(dtype, dst, factor);
  else jsScale(dtype, dst, factor);
}

/**
 * In place `dst[i] /= divisor`, the last step of AVG. Floats divide in their precision (f16/bf16
 * through f32; `divisor` must be finite and non-zero); integers truncate toward zero and need an
 * integer divisor in [1, 2^31) (i64 too).
 */
export function divideInto(dtype: DType, dst: CpuTensor, divisor: number): void {
  checkArray("dst", dtype, dst, "divideInto");
  const float = isFloat(dtype);
  if (
    float
      ? !(Number.isFinite(divisor) && divisor !== 0)
      : !(Number.isInteger(divisor) && divisor >= 1 && divisor < 2 ** 31)
  ) {
    throw new InvalidArgumentError(`cannot divide ${dtype} by ${divisor}`, { op: "divideInto" });
  }
  if (divisor === 1) return;
  // Dividing by 2^k equals multiplying by 2^-k exactly (one rounding of the same value).
  const pow2 = Number.isInteger(divisor) && divisor > 0 && divisor < 2 ** 31 &&
    (divisor & (divisor - 1)) === 0;
  if (float && pow2) return scaleInto(dtype, dst, 1 / divisor);
  if (unaryStaged(dtype, dst.length)) stagedDivide(dtype, dst, divisor);
  else jsDivide(dtype, dst, divisor);
}
