/**
 * @module
 * The numbers the benchmark writes and expects. Every checked call gets its own data: a seed per row
 * and checked iteration, hashed with the global element index, so values differ per rank, per element
 * (no short period: a right value in the wrong place is caught) and per checked call (a call that
 * did nothing leaves the last check's values, which are wrong now). Ops that move data carry 1..100;
 * reductions take 1..4 (1..2 for products), independently per rank, so every dtype holds every partial
 * result exactly and no result is the same everywhere. Outputs start as -1 ({@link poison}).
 * bench/compare/common.py computes the same numbers; change both together.
 */

import type { CpuTensor, DType } from "../collectives/mod.ts";
import { PREMUL_FACTOR, type RedOp } from "./catalog.ts";

/** A 32-bit integer finalizer (xor-shift-multiply): every bit of the input moves every bit of the output. */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** The seed of checked call `k` (0 = the first check, then 1 + the timed iteration) of row `row`. */
export function seedOf(row: number, k: number): number {
  return mix32((Math.imul(row + 1, 0x9e3779b9) ^ (k + 1)) >>> 0);
}

/** The hash of global element `g` under `seed`; what every value below derives from. */
export function hashAt(seed: number, g: number): number {
  return mix32((g + seed) >>> 0);
}

/**
 * Whether timed iteration `k` of `iters` in row `row` is checked: one at a seeded position in every
 * block of 8, and the last. Every rank (and the comparison scripts) computes the same answer.
 */
export function isChecked(row: number, k: number, iters: number): boolean {
  if (k === iters - 1) return true;
  return k % 8 === mix32((Math.imul(row + 1, 0x9e3779b9) + Math.floor(k / 8)) >>> 0) % 8;
}

/** The value rank `src` holds at global element `g` under `seed` for ops that move data: 1..100. */
export function moveValue(src: number, g: number, seed: number): number {
  return ((hashAt(seed, g) % 100) + src * 37) % 100 + 1;
}

/**
 * The value rank `src` contributes at global element `g` under `seed` to a reduction: 1..4 (1..2 for
 * products, whose results are powers of two), so sums stay exact in bf16 up to 64 ranks. Each rank
 * reads its own 2 bits of the element's hash (ranks 16 and up: of another hash), so ranks' inputs are
 * independent and no reduction's result is the same at every element.
 */
export function reduceInput(redop: RedOp, src: number, g: number, seed: number): number {
  const word = hashAt((seed + Math.imul(Math.floor(src / 16), 0x9e3779b9)) >>> 0, g);
  return ((word >>> (2 * (src % 16))) & (redop === "prod" ? 1 : 3)) + 1;
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** The bf16 bits of `v` (round to nearest even from float32). */
function bf16Bits(v: number): number {
  F32[0] = v;
  const b = U32[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return 0x7fc0; // NaN
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The value of bf16 bits. */
function bf16Value(bits: number): number {
  U32[0] = bits << 16;
  return F32[0];
}

/** `v` as `dtype` stores it: rounded for floats, wrapped for integers. */
export function castTo(dtype: DType, v: number): number {
  switch (dtype) {
    case "f64":
      return v;
    case "f32":
      return Math.fround(v);
    case "f16":
      return Math.f16round(v);
    case "bf16":
      return bf16Value(bf16Bits(v));
    case "i32":
      return v | 0;
    case "u32":
      return v >>> 0;
    case "i8":
      return (v << 24) >> 24;
    case "u8":
      return v & 255;
    case "i64":
      return Number(BigInt.asIntN(64, BigInt(Math.trunc(v))));
  }
}

/** The result of `redop` over `n` ranks at global element `g` under `seed`, as `dtype`. */
export function reduceResult(redop: RedOp, dtype: DType, n: number, g: number, seed: number): number {
  return resultAt(redop, dtype, n, seed)(g);
}

/** {@link reduceResult} as a function of the element, with everything else fixed (for whole buffers). */
export function resultAt(redop: RedOp, dtype: DType, n: number, seed: number): (g: number) => number {
  const float = dtype === "f32" || dtype === "f64" || dtype === "f16" || dtype === "bf16";
  const combine = COMBINE[redop];
  return (g) => {
    let acc = reduceInput(redop, 0, g, seed);
    for (let r = 1; r < n; r++) acc = combine(acc, reduceInput(redop, r, g, seed));
    if (redop === "avg") acc = float ? acc / n : Math.trunc(acc / n);
    if (redop === "premul_sum") acc *= PREMUL_FACTOR;
    return castTo(dtype, acc);
  };
}

/** How each reduce op combines two values (AVG and PREMUL_SUM sum; their last step is resultAt's). */
const COMBINE: Readonly<Record<RedOp, (a: number, b: number) => number>> = {
  sum: (a, b) => a + b,
  avg: (a, b) => a + b,
  premul_sum: (a, b) => a + b,
  none: (a, b) => a + b,
  prod: (a, b) => a * b,
  min: Math.min,
  max: Math.max,
  band: (a, b) => a & b,
  bor: (a, b) => a | b,
  bxor: (a, b) => a ^ b,
};

/**
 * Fills `t` with the value no input or result holds (-1 as the dtype stores it: 255 for u8), so an
 * output element a call failed to write is always wrong.
 */
export function poison(t: CpuTensor, dtype: DType): void {
  if (t instanceof BigInt64Array) t.fill(-1n);
  else if (dtype === "f16" || dtype === "bf16") fillWith(t, dtype, 0, () => -1);
  else t.fill(-1);
}

/** A zero-filled tensor of `length` elements of `dtype`. */
export function allocTensor(dtype: DType, length: number): CpuTensor {
  switch (dtype) {
    case "f32":
      return new Float32Array(length);
    case "f64":
      return new Float64Array(length);
    case "i32":
      return new Int32Array(length);
    case "i64":
      return new BigInt64Array(length);
    case "u8":
      return new Uint8Array(length);
    case "i8":
      return new Int8Array(length);
    case "u32":
      return new Uint32Array(length);
    case "f16":
    case "bf16":
      return new Uint16Array(length);
  }
}

/** Reads and writes the elements of a tensor as numbers, whatever its dtype. */
export interface Access {
  /** Element `i` as a number. */
  get(i: number): number;
  /** Stores `v` (rounded or wrapped as the dtype does) at `i`. */
  set(i: number, v: number): void;
}

/** Element access to `t`, which holds `dtype`. */
export function access(t: CpuTensor, dtype: DType): Access {
  if (dtype === "f16") {
    const h = new Float16Array(t.buffer, t.byteOffset, t.length);
    return { get: (i) => h[i], set: (i, v) => void (h[i] = v) };
  }
  if (dtype === "bf16") {
    const u = t as Uint16Array;
    return { get: (i) => bf16Value(u[i]), set: (i, v) => void (u[i] = bf16Bits(v)) };
  }
  if (t instanceof BigInt64Array) {
    return { get: (i) => Number(t[i]), set: (i, v) => void (t[i] = BigInt(Math.trunc(v))) };
  }
  const a = t as Exclude<CpuTensor, BigInt64Array>;
  return { get: (i) => a[i], set: (i, v) => void (a[i] = v) };
}

/** Fills `t` so that element i holds `valueAt(g0 + i)` (one pass). */
export function fillWith(t: CpuTensor, dtype: DType, g0: number, valueAt: (g: number) => number): void {
  if (dtype === "f16" || dtype === "bf16" || t instanceof BigInt64Array) {
    const a = access(t, dtype);
    for (let i = 0; i < t.length; i++) a.set(i, valueAt(g0 + i));
    return;
  }
  const a = t as Exclude<CpuTensor, BigInt64Array>;
  for (let i = 0; i < a.length; i++) a[i] = valueAt(g0 + i);
}

/** Relative tolerance of float comparisons per dtype (AVG and rounding paths may differ by an ulp). */
const TOLERANCE: Readonly<Record<DType, number>> = {
  f64: 1e-12,
  f32: 1e-6,
  f16: 2e-3,
  bf16: 1.6e-2,
  i32: 0,
  i64: 0,
  u8: 0,
  i8: 0,
  u32: 0,
};

/** How many elements of `t` differ from `valueAt(g0 + i)`, floats within the dtype's tolerance. */
export function countWrong(t: CpuTensor, dtype: DType, g0: number, valueAt: (g: number) => number): number {
  const tol = TOLERANCE[dtype];
  const n = t.length;
  let wrong = 0;
  if (tol === 0 && !(t instanceof BigInt64Array) && dtype !== "f16" && dtype !== "bf16") {
    const a = t as Exclude<CpuTensor, BigInt64Array>;
    for (let i = 0; i < n; i++) if (a[i] !== valueAt(g0 + i)) wrong++;
    return wrong;
  }
  const { get } = access(t, dtype);
  for (let i = 0; i < n; i++) {
    const got = get(i);
    const exp = valueAt(g0 + i);
    if (!(Math.abs(got - exp) <= tol * Math.max(1, Math.abs(exp)))) wrong++;
  }
  return wrong;
}

/** Spoils element 0 of `t` (the `--corrupt` testing aid): a value no pattern or result holds. */
export function spoil(t: CpuTensor, dtype: DType): void {
  if (t.length === 0) return;
  const a = access(t, dtype);
  a.set(0, a.get(0) === 0 ? 101 : 0);
}
