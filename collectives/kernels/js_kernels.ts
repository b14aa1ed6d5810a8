/**
 * @module
 * Plain JavaScript reduce loops over typed arrays: one monomorphic function per (array type, op) so
 * V8 keeps each loop specialised. Used for tiny arrays and as the fallback; dispatch is in `reduce.ts`.
 */

import type { CpuTensor, DType } from "../../dtype.ts";
import { bf16ToNumber, f16ToNumber, numberToBf16, numberToF16 } from "./half.ts";
import type { KernelOp } from "./wasm_kernels.ts";

// Float loops. Math.min/max propagate NaN and order -0 below +0, as the wasm f32x4.min/max do.
function sumF32(d: Float32Array, s: Float32Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] += s[i];
}
function prodF32(d: Float32Array, s: Float32Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] *= s[i];
}
function minF32(d: Float32Array, s: Float32Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] = Math.min(d[i], s[i]);
}
function maxF32(d: Float32Array, s: Float32Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] = Math.max(d[i], s[i]);
}
function sumF64(d: Float64Array, s: Float64Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] += s[i];
}
function prodF64(d: Float64Array, s: Float64Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] *= s[i];
}
function minF64(d: Float64Array, s: Float64Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] = Math.min(d[i], s[i]);
}
function maxF64(d: Float64Array, s: Float64Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] = Math.max(d[i], s[i]);
}

// 32-bit integers: typed-array stores wrap sums; Math.imul keeps the low 32 bits of products.
function sumI32(d: Int32Array, s: Int32Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] += s[i];
}
function prodI32(d: Int32Array, s: Int32Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] = Math.imul(d[i], s[i]);
}
function minI32(d: Int32Array, s: Int32Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] < d[i]) d[i] = s[i];
}
function maxI32(d: Int32Array, s: Int32Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] > d[i]) d[i] = s[i];
}
function sumU32(d: Uint32Array, s: Uint32Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] += s[i];
}
function prodU32(d: Uint32Array, s: Uint32Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] = Math.imul(d[i], s[i]);
}
function minU32(d: Uint32Array, s: Uint32Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] < d[i]) d[i] = s[i];
}
function maxU32(d: Uint32Array, s: Uint32Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] > d[i]) d[i] = s[i];
}

// Bytes: products of two bytes fit in a double exactly, and the store keeps the low 8 bits.
function sumU8(d: Uint8Array, s: Uint8Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] += s[i];
}
function prodU8(d: Uint8Array, s: Uint8Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] *= s[i];
}
function minU8(d: Uint8Array, s: Uint8Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] < d[i]) d[i] = s[i];
}
function maxU8(d: Uint8Array, s: Uint8Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] > d[i]) d[i] = s[i];
}
function sumI8(d: Int8Array, s: Int8Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] += s[i];
}
function prodI8(d: Int8Array, s: Int8Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] *= s[i];
}
function minI8(d: Int8Array, s: Int8Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] < d[i]) d[i] = s[i];
}
function maxI8(d: Int8Array, s: Int8Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] > d[i]) d[i] = s[i];
}

// 64-bit integers: BigInt64Array stores wrap to 64 bits (two's complement).
function sumI64(d: BigInt64Array, s: BigInt64Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] += s[i];
}
function prodI64(d: BigInt64Array, s: BigInt64Array): void {
  for (let i = 0, n = d.length; i < n; i++) d[i] *= s[i];
}
function minI64(d: BigInt64Array, s: BigInt64Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] < d[i]) d[i] = s[i];
}
function maxI64(d: BigInt64Array, s: BigInt64Array): void {
  for (let i = 0, n = d.length; i < n; i++) if (s[i] > d[i]) d[i] = s[i];
}
function bitI64(op: KernelOp, d: BigInt64Array, s: BigInt64Array): void {
  const n = d.length;
  if (op === "band") { for (let i = 0; i < n; i++) d[i] &= s[i]; }
  else if (op === "bor") { for (let i = 0; i < n; i++) d[i] |= s[i]; }
  else for (let i = 0; i < n; i++) d[i] ^= s[i];
}

/** Bitwise ops on the number-valued integer arrays (stores keep the low bits of the result). */
function bitwise(op: KernelOp, d: Int32Array | Uint32Array | Uint8Array | Int8Array, s: typeof d): void {
  const n = d.length;
  if (op === "band") { for (let i = 0; i < n; i++) d[i] &= s[i]; }
  else if (op === "bor") { for (let i = 0; i < n; i++) d[i] |= s[i]; }
  else for (let i = 0; i < n; i++) d[i] ^= s[i];
}

/** f16/bf16 in a Uint16Array: decode to a number, combine, round to f32 and back to half bits. */
function half(dtype: "f16" | "bf16", op: KernelOp, d: Uint16Array, s: Uint16Array): void {
  const dec = dtype === "f16" ? f16ToNumber : bf16ToNumber;
  const enc = dtype === "f16" ? numberToF16 : numberToBf16;
  const n = d.length;
  for (let i = 0; i < n; i++) {
    const a = dec(d[i]), b = dec(s[i]);
    const r = op === "sum"
      ? a + b
      : op === "product"
      ? a * b
      : op === "min"
      ? Math.min(a, b)
      : Math.max(a, b);
    d[i] = enc(Math.fround(r));
  }
}

type Loop<A> = Partial<Record<KernelOp, (d: A, s: A) => void>>;
const F32: Loop<Float32Array> = { sum: sumF32, product: prodF32, min: minF32, max: maxF32 };
const F64: Loop<Float64Array> = { sum: sumF64, product: prodF64, min: minF64, max: maxF64 };
const I32: Loop<Int32Array> = { sum: sumI32, product: prodI32, min: minI32, max: maxI32 };
const U32: Loop<Uint32Array> = { sum: sumU32, product: prodU32, min: minU32, max: maxU32 };
const U8: Loop<Uint8Array> = { sum: sumU8, product: prodU8, min: minU8, max: maxU8 };
const I8: Loop<Int8Array> = { sum: sumI8, product: prodI8, min: minI8, max: maxI8 };
const I64: Loop<BigInt64Array> = { sum: sumI64, product: prodI64, min: minI64, max: maxI64 };

function run<A>(table: Loop<A>, op: KernelOp, d: A, s: A): void {
  (table[op] as (d: A, s: A) => void)(d, s);
}

/**
 * `dst[i] = op(dst[i], src[i])` in JavaScript. The caller has checked that both arrays are of
 * `dtype`, have equal lengths and that the op suits the dtype.
 */
export function jsReduce(dtype: DType, op: KernelOp, dst: CpuTensor, src: CpuTensor): void {
  const bit = op === "band" || op === "bor" || op === "bxor";
  switch (dtype) {
    case "f32":
      return run(F32, op, dst as Float32Array, src as Float32Array);
    case "f64":
      return run(F64, op, dst as Float64Array, src as Float64Array);
    case "i32":
      return bit
        ? bitwise(op, dst as Int32Array, src as Int32Array)
        : run(I32, op, dst as Int32Array, src as Int32Array);
    case "u32":
      return bit
        ? bitwise(op, dst as Uint32Array, src as Uint32Array)
        : run(U32, op, dst as Uint32Array, src as Uint32Array);
    case "u8":
      return bit
        ? bitwise(op, dst as Uint8Array, src as Uint8Array)
        : run(U8, op, dst as Uint8Array, src as Uint8Array);
    case "i8":
      return bit
        ? bitwise(op, dst as Int8Array, src as Int8Array)
        : run(I8, op, dst as Int8Array, src as Int8Array);
    case "i64":
      return bit
        ? bitI64(op, dst as BigInt64Array, src as BigInt64Array)
        : run(I64, op, dst as BigInt64Array, src as BigInt64Array);
    case "f16":
    case "bf16":
      return half(dtype, op, dst as Uint16Array, src as Uint16Array);
  }
}

/** `dst[i] *= factor` for a float dtype; f32/f16/bf16 round the factor to f32 first (as wasm does). */
export function jsScale(dtype: DType, dst: CpuTensor, factor: number): void {
  if (dtype === "f64") {
    const d = dst as Float64Array;
    for (let i = 0, n = d.length; i < n; i++) d[i] *= factor;
    return;
  }
  const ff = Math.fround(factor);
  if (dtype === "f32") {
    const d = dst as Float32Array;
    for (let i = 0, n = d.length; i < n; i++) d[i] *= ff;
    return;
  }
  const dec = dtype === "f16" ? f16ToNumber : bf16ToNumber;
  const enc = dtype === "f16" ? numberToF16 : numberToBf16;
  const d = dst as Uint16Array;
  for (let i = 0, n = d.length; i < n; i++) d[i] = enc(Math.fround(dec(d[i]) * ff));
}

/**
 * `dst[i] /= divisor`: floats divide in their precision (f16/bf16 through f32, divisor rounded to
 * f32); integers truncate toward zero (the caller passes a positive integer divisor).
 */
export function jsDivide(dtype: DType, dst: CpuTensor, divisor: number): void {
  switch (dtype) {
    case "f64": {
      const d = dst as Float64Array;
      for (let i = 0, n = d.length; i < n; i++) d[i] /= divisor;
      return;
    }
    case "f32": {
      const d = dst as Float32Array, v = Math.fround(divisor);
      for (let i = 0, n = d.length; i < n; i++) d[i] /= v;
      return;
    }
    case "f16":
    case "bf16": {
      const dec = dtype === "f16" ? f16ToNumber : bf16ToNumber;
      const enc = dtype === "f16" ? numberToF16 : numberToBf16;
      const d = dst as Uint16Array, v = Math.fround(divisor);
      for (let i = 0, n = d.length; i < n; i++) d[i] = enc(Math.fround(dec(d[i]) / v));
      return;
    }
    case "i32": {
      const d = dst as Int32Array;
      for (let i = 0, n = d.length; i < n; i++) d[i] = (d[i] / divisor) | 0;
      return;
    }
    case "i64": {
      const d = dst as BigInt64Array, v = BigInt(divisor);
      for (let i = 0, n = d.length; i < n; i++) d[i] /= v;
      return;
    }
    case "u32":
    case "u8":
    case "i8": {
      const d = dst as Uint32Array | Uint8Array | Int8Array;
      for (let i = 0, n = d.length; i < n; i++) d[i] = Math.trunc(d[i] / divisor);
      return;
    }
  }
}
