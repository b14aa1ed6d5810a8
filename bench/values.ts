/**
 * @module
 * The numbers the benchmark writes and expects: a data pattern for ops that move data, small inputs
 * for reductions (so every dtype holds every partial result exactly), the expected result of each
 * reduce op, and element access for every dtype (f16 through `Float16Array`, bf16 by its bits, i64
 * through BigInt). Patterns repeat every {@link PERIOD} elements, so filling and checking stay cheap.
 */

import type { CpuTensor, DType } from "../collectives/mod.ts";
import { PREMUL_FACTOR, type RedOp } from "./catalog.ts";

/** Every pattern repeats with this period in the element's global index. */
export const PERIOD = 100;

/**
 * The value rank `src` holds at global element `g` for ops that move data: 1..100, distinct between
 * ranks and between neighbouring elements, exact in every dtype (i8 included).
 */
export function moveValue(src: number, g: number): number {
  return ((src * 37 + (g % PERIOD) * 11) % PERIOD) + 1;
}

/**
 * The value rank `src` contributes at global element `g` to a reduction: 1 or 2 for products (their
 * results are powers of two, exact everywhere), 1..4 otherwise (sums stay exact in bf16 up to 64 ranks).
 */
export function reduceInput(redop: RedOp, src: number, g: number): number {
  return redop === "prod" ? ((src + g) % 2) + 1 : ((src + g) % 4) + 1;
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

/** The result of `redop` at global element `g` over `n` ranks holding {@link reduceInput}, as `dtype`. */
export function reduceResult(redop: RedOp, dtype: DType, n: number, g: number): number {
  const float = dtype === "f32" || dtype === "f64" || dtype === "f16" || dtype === "bf16";
  let acc = reduceInput(redop, 0, g);
  for (let r = 1; r < n; r++) {
    const v = reduceInput(redop, r, g);
    switch (redop) {
      case "prod":
        acc *= v;
        break;
      case "min":
        acc = Math.min(acc, v);
        break;
      case "max":
        acc = Math.max(acc, v);
        break;
      case "band":
        acc &= v;
        break;
      case "bor":
        acc |= v;
        break;
      case "bxor":
        acc ^= v;
        break;
      default: // sum, avg, premul_sum
        acc += v;
    }
  }
  if (redop === "avg") acc = float ? acc / n : Math.trunc(acc / n);
  if (redop === "premul_sum") acc *= PREMUL_FACTOR;
  return castTo(dtype, acc);
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

/**
 * Fills `t` so that element i holds `valueAt(g0 + i)`, where `valueAt` repeats every
 * {@link PERIOD} indices: one period is written, then copied forward in doubling blocks.
 */
export function fillPattern(t: CpuTensor, dtype: DType, g0: number, valueAt: (g: number) => number): void {
  const a = access(t, dtype);
  const head = Math.min(t.length, PERIOD);
  for (let i = 0; i < head; i++) a.set(i, valueAt(g0 + i));
  for (let done = head; done < t.length; done *= 2) {
    t.copyWithin(done, 0, Math.min(done, t.length - done));
  }
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

/**
 * How many elements of `t` differ from `valueAt(g0 + i)` (`valueAt` repeating every {@link PERIOD}),
 * floats within the dtype's tolerance. One pass over `t`; the expected period is computed once.
 */
export function countWrong(t: CpuTensor, dtype: DType, g0: number, valueAt: (g: number) => number): number {
  const table = new Float64Array(PERIOD);
  for (let k = 0; k < PERIOD; k++) table[k] = valueAt(g0 + k);
  const tol = TOLERANCE[dtype];
  const n = t.length;
  let wrong = 0;
  let k = 0;
  if (tol === 0 && !(t instanceof BigInt64Array) && dtype !== "f16" && dtype !== "bf16") {
    const a = t as Exclude<CpuTensor, BigInt64Array>;
    for (let i = 0; i < n; i++) {
      if (a[i] !== table[k]) wrong++;
      if (++k === PERIOD) k = 0;
    }
    return wrong;
  }
  const { get } = access(t, dtype);
  for (let i = 0; i < n; i++) {
    const got = get(i);
    const exp = table[k];
    if (!(Math.abs(got - exp) <= tol * Math.max(1, Math.abs(exp)))) wrong++;
    if (++k === PERIOD) k = 0;
  }
  return wrong;
}

/** Spoils element 0 of `t` (the `--corrupt` testing aid): a value no pattern or result holds. */
export function spoil(t: CpuTensor, dtype: DType): void {
  if (t.length === 0) return;
  const a = access(t, dtype);
  a.set(0, a.get(0) === 0 ? 101 : 0);
}

/** Sets every element of `t` to zero. */
export function clear(t: CpuTensor): void {
  if (t instanceof BigInt64Array) t.fill(0n);
  else t.fill(0);
}
