/**
 * @module
 * Test-only reference: deterministic per-rank inputs and a plain, obviously-correct reduction in
 * float64/BigInt arithmetic. It shares no code with the library's kernels on purpose.
 */

import type { CpuTensor, DType, ReduceOp } from "../../collectives/mod.ts";

/** A small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** f16 bits -> number. */
export function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** bf16 bits -> number. */
export function bf16ToNumber(h: number): number {
  const f = new Float32Array(1);
  new Uint32Array(f.buffer)[0] = h << 16;
  return f[0];
}

/** Exact bf16/f16 bit patterns of small "nice" values (integers and halves in [-8, 8]). */
function halfBits(dtype: "f16" | "bf16", v: number): number {
  // v is k/2 for an integer k in [-16, 16]: exactly representable in both formats.
  if (dtype === "bf16") {
    const f = new Float32Array([v]);
    return new Uint32Array(f.buffer)[0] >>> 16;
  }
  if (v === 0) return 0;
  const s = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  const m = Math.round((a / 2 ** e - 1) * 1024);
  return s | ((e + 15) << 10) | m;
}

/** The tensor type for a dtype. */
export function makeTensor(dtype: DType, n: number): CpuTensor {
  switch (dtype) {
    case "f32":
      return new Float32Array(n);
    case "f64":
      return new Float64Array(n);
    case "i32":
      return new Int32Array(n);
    case "i64":
      return new BigInt64Array(n);
    case "u8":
      return new Uint8Array(n);
    case "i8":
      return new Int8Array(n);
    case "u32":
      return new Uint32Array(n);
    case "f16":
    case "bf16":
      return new Uint16Array(n);
  }
}

/**
 * Rank `rank`'s input for a test case. Floats are random in [-4, 4) (products near 1); f16/bf16
 * hold small halves so that sums are exact; integers span their full range (sums wrap).
 */
export function inputFor(
  dtype: DType,
  op: ReduceOp | "none",
  n: number,
  rank: number,
  seed: number,
): CpuTensor {
  const r = rng(seed * 1000003 + rank * 7919 + 17);
  const t = makeTensor(dtype, n);
  for (let i = 0; i < n; i++) {
    const u = r();
    switch (dtype) {
      case "f32":
      case "f64":
        (t as Float64Array)[i] = op === "product" ? 0.75 + u * 0.5 : u * 8 - 4;
        break;
      case "f16":
      case "bf16":
        (t as Uint16Array)[i] = halfBits(
          dtype,
          op === "product" ? (u < 0.5 ? 1 : 0.5) : Math.floor(u * 33 - 16) / 2,
        );
        break;
      case "i64":
        (t as BigInt64Array)[i] = BigInt.asIntN(
          64,
          BigInt(Math.floor(u * 2 ** 32)) << 31n ^ BigInt(Math.floor(r() * 2 ** 31)),
        );
        break;
      default:
        (t as Int32Array)[i] = Math.floor(u * 2 ** 32); // stored with the array's wrap-around
    }
  }
  return t;
}

/** Element i of t as a number or bigint, decoding halves. */
function get(dtype: DType, t: CpuTensor, i: number): number | bigint {
  if (dtype === "f16") return f16ToNumber((t as Uint16Array)[i]);
  if (dtype === "bf16") return bf16ToNumber((t as Uint16Array)[i]);
  return t[i];
}

/** Result of one element over all ranks' values, exact (float64 / BigInt), before rounding to dtype. */
export function reduceValues(
  dtype: DType,
  op: ReduceOp,
  vals: (number | bigint)[],
  factor: number,
): number | bigint {
  const ints = dtype !== "f32" && dtype !== "f64" && dtype !== "f16" && dtype !== "bf16";
  if (dtype === "i64") {
    const b = vals as bigint[];
    switch (op) {
      case "sum":
        return BigInt.asIntN(64, b.reduce((a, x) => a + x, 0n));
      case "avg":
        return BigInt.asIntN(64, b.reduce((a, x) => a + x, 0n)) / BigInt(b.length);
      case "product":
        return BigInt.asIntN(64, b.reduce((a, x) => BigInt.asIntN(64, a * x), 1n));
      case "min":
        return b.reduce((a, x) => (x < a ? x : a));
      case "max":
        return b.reduce((a, x) => (x > a ? x : a));
      case "band":
        return b.reduce((a, x) => a & x);
      case "bor":
        return b.reduce((a, x) => a | x);
      case "bxor":
        return b.reduce((a, x) => a ^ x);
      default:
        throw new Error(`no reference for ${op} on i64`);
    }
  }
  const v = vals as number[];
  const wrap = (x: number) => {
    const t = makeTensor(dtype, 1) as Int32Array;
    t[0] = x;
    return t[0];
  };
  switch (op) {
    case "sum":
      return ints
        ? wrap(Number(v.reduce((a, x) => a + BigInt(x), 0n) % (1n << 40n)))
        : v.reduce((a, x) => a + x, 0);
    case "avg": {
      if (!ints) return v.reduce((a, x) => a + x, 0) / v.length;
      return Math.trunc(wrap(Number(v.reduce((a, x) => a + BigInt(x), 0n) % (1n << 40n))) / v.length);
    }
    case "premul_sum":
      return v.reduce((a, x) => a + x * factor, 0);
    case "product":
      return ints
        ? wrap(Number(v.reduce((a, x) => BigInt.asIntN(64, a * BigInt(x)), 1n) & 0xffffffffn))
        : v.reduce((a, x) => a * x, 1);
    case "min":
      return v.reduce((a, x) => (x < a || Number.isNaN(x) ? x : a));
    case "max":
      return v.reduce((a, x) => (x > a || Number.isNaN(x) ? x : a));
    case "band":
      return wrap(v.reduce((a, x) => a & x));
    case "bor":
      return wrap(v.reduce((a, x) => a | x));
    case "bxor":
      return wrap(v.reduce((a, x) => a ^ x));
  }
}

/** Relative precision of a dtype, for float comparisons. */
function eps(dtype: DType): number {
  return dtype === "f64" ? 2 ** -52 : dtype === "f32" ? 2 ** -23 : dtype === "f16" ? 2 ** -10 : 2 ** -7;
}

/**
 * Compares `got` with the reference over all ranks' inputs; returns a description of the first
 * mismatch, or null. Floats allow n rounding steps relative to the sum of magnitudes.
 */
export function checkResult(
  dtype: DType,
  op: ReduceOp,
  got: CpuTensor,
  inputs: CpuTensor[],
  factor = 1,
  range: [number, number] = [0, got.length],
  gotOffset = 0,
): string | null {
  return prepareCheck(dtype, op, inputs, factor, range)(got, gotOffset);
}

/**
 * The reference of {@link checkResult} computed once, as a checker to apply to many results (e.g.
 * the same collective run with every algorithm): each call compares one result.
 */
export function prepareCheck(
  dtype: DType,
  op: ReduceOp,
  inputs: CpuTensor[],
  factor = 1,
  range: [number, number] = [0, inputs[0]?.length ?? 0],
): (got: CpuTensor, gotOffset?: number) => string | null {
  const n = inputs.length;
  const count = range[1] - range[0];
  const want: (number | bigint)[] = new Array(count);
  const tol = new Float64Array(count); // -1: exact; -2: relative (min/max floats)
  const isF = dtype === "f32" || dtype === "f64" || dtype === "f16" || dtype === "bf16";
  for (let k = 0; k < count; k++) {
    const i = range[0] + k;
    const vals = inputs.map((t) => get(dtype, t, i));
    const w = reduceValues(dtype, op, vals, factor);
    want[k] = w;
    if (typeof w === "bigint" || !isF) tol[k] = -1;
    else if (op === "min" || op === "max") tol[k] = -2;
    else {
      const mag = vals.reduce(
        (a: number, x) => a + Math.abs(x as number) * (op === "premul_sum" ? Math.abs(factor) : 1),
        0,
      );
      tol[k] = 2 * n * eps(dtype) * (op === "product" ? Math.abs(w) : mag) + 1e-300;
    }
  }
  return (got, gotOffset = 0) => {
    for (let k = 0; k < count; k++) {
      const i = range[0] + k;
      const w = want[k];
      const g = get(dtype, got, k + gotOffset);
      if (typeof w === "bigint" || typeof g === "bigint") {
        if (w !== g) return `element ${i}: got ${g}, want ${w}`;
        continue;
      }
      if (Number.isNaN(w) && Number.isNaN(g)) continue;
      if (tol[k] === -1 || tol[k] === -2) {
        if (g !== w && !(tol[k] === -2 && Math.abs(g - w) <= Math.abs(w) * eps(dtype))) {
          return `element ${i}: got ${g}, want ${w}`;
        }
        continue;
      }
      if (Math.abs(g - w) > tol[k]) return `element ${i}: got ${g}, want ${w} (tolerance ${tol[k]})`;
    }
    return null;
  };
}

/** Whether two tensors hold the same bytes (and the same number of them). */
export function sameBytes(a: CpuTensor, b: CpuTensor): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** The tensors of `blocks` one after another, as one tensor of `dtype`. */
export function concat(dtype: DType, blocks: CpuTensor[]): CpuTensor {
  const out = makeTensor(dtype, blocks.reduce((a, b) => a + b.length, 0));
  const bytes = new Uint8Array(out.buffer);
  let at = 0;
  for (const b of blocks) {
    bytes.set(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), at);
    at += b.byteLength;
  }
  return out;
}

/**
 * An all-to-all split matrix: `m[p][q]` elements go from rank p to rank q. Sizes up to `max`, and
 * about one pair in four sends nothing.
 */
export function splitMatrix(n: number, max: number, seed: number): number[][] {
  const r = rng(seed * 31 + 5);
  return Array.from(
    { length: n },
    () => Array.from({ length: n }, () => (r() < 0.25 ? 0 : Math.floor(r() * max))),
  );
}

/**
 * What rank `r` holds after an all-to-all in which rank p's input is `inputs[p]`, cut in the blocks
 * of row p of `m`: block q of every rank's input, one rank after another.
 */
export function allToAllExpected(dtype: DType, inputs: CpuTensor[], m: number[][], r: number): CpuTensor {
  const blocks = inputs.map((t, p) => {
    const start = m[p].slice(0, r).reduce((a, b) => a + b, 0);
    return t.subarray(start, start + m[p][r]) as CpuTensor;
  });
  return concat(dtype, blocks);
}

/** A structured value for the object collectives: nested maps, arrays, typed arrays, bigints. */
export function objectFor(rank: number, seed: number, bulky = false): unknown {
  const r = rng(seed * 17 + rank);
  return {
    rank,
    seed,
    name: `rank-${rank}-${"x".repeat(rank)}`,
    nested: new Map<string, unknown>([
      ["floats", new Float32Array([rank, r(), -r()])],
      ["inner", new Map<number, unknown>([[rank, { deep: [1, "two", null, true, rank * 1.5] }]])],
      ["set", new Set([rank, rank + 1])],
    ]),
    f64: new Float64Array(rank + 1).map(() => r()),
    i32: new Int32Array(rank + 2).fill(-rank),
    i64: new BigInt64Array([BigInt(rank) << 40n, -1n]),
    u8: bulky ? new Uint8Array(200_000).map((_, i) => (i * 7 + rank) & 0xff) : new Uint8Array([rank]),
    big: 2n ** 70n + BigInt(rank),
    when: new Date(1_700_000_000_000 + rank),
  };
}
