/**
 * @module
 * The SIMD reduce kernels, written as WebAssembly bytes with the emitter, and the table that maps a
 * (dtype, op) pair to an exported kernel. Instantiating them over a memory is left to `wasm_reducer.ts`.
 *
 * Every binary kernel has the signature `(dst: i32, src: i32, n: i32)` (byte addresses, element
 * count) and computes `dst[i] = op(dst[i], src[i])`: a loop of four 16-byte vectors, then single
 * vectors, then a scalar tail. Scale and divide kernels are `(ptr: i32, n: i32, x: f64 | i32)`.
 */

import type { DType } from "../../dtype.ts";
import { encodeModule, type FunctionBuilder, Op, Simd, T, type ValType } from "./wasm_emitter.ts";
import { BF16, F16, F_DIV, F_MAX, F_MIN, F_MUL, F_SUM, halfBinary, halfUnary } from "./wasm_half.ts";
import {
  type BinarySpec,
  buildBinary,
  buildUnary,
  type Combine,
  core,
  scalarOf,
  simd,
  type UnarySpec,
} from "./wasm_loops.ts";

/** The element-wise ops the kernels implement (AVG and PREMUL_SUM reduce as SUM). */
export type KernelOp = "sum" | "product" | "min" | "max" | "band" | "bor" | "bxor";

/** Where a (dtype, op) pair runs: an exported kernel and how many kernel units make one element. */
export interface KernelRef {
  /** Export name of the kernel. */
  readonly name: string;
  /** Kernel units per element (the byte-wise bitwise kernels count bytes, the others elements). */
  readonly unitsPerElement: number;
}

// ---- plain element types -------------------------------------------------------------------

/** (a, b) -> cmp(a, b) ? a : b, for scalar types without a min/max instruction. */
function selectBy(type: ValType, cmp: number): Combine {
  return (f, t) => {
    const a = t.get(type, "a"), b = t.get(type, "b");
    f.set(b).set(a).get(a).get(b).get(a).get(b).emit(cmp, Op.select);
  };
}

/** (a, b) -> bitselect(a, b, cmp(a, b)), for i64x2 min/max. */
function bitselectBy(cmp: number): Combine {
  return (f, t) => {
    const a = t.get(T.v128, "a"), b = t.get(T.v128, "b");
    f.set(b).set(a).get(a).get(b).get(a).get(b).simd(cmp).simd(Simd.v128_bitselect);
  };
}

const f32 = (v: number, s: number): BinarySpec => ({
  bytes: 4,
  vector: simd(v),
  scalar: scalarOf(4, Op.f32_load, Op.f32_store, core(s)),
});
const f64 = (v: number, s: number): BinarySpec => ({
  bytes: 8,
  vector: simd(v),
  scalar: scalarOf(8, Op.f64_load, Op.f64_store, core(s)),
});
const i32 = (v: number, s: Combine): BinarySpec => ({
  bytes: 4,
  vector: simd(v),
  scalar: scalarOf(4, Op.i32_load, Op.i32_store, s),
});
const i64 = (v: Combine, s: Combine): BinarySpec => ({
  bytes: 8,
  vector: v,
  scalar: scalarOf(8, Op.i64_load, Op.i64_store, s),
});
const i8 = (v: number, load: number, s: Combine): BinarySpec => ({
  bytes: 1,
  vector: simd(v),
  scalar: scalarOf(1, load, Op.i32_store8, s),
});

/** Unary f32/f64 kernel multiplying or dividing by the f64 param (rounded to f32 for f32). */
function floatUnary(bytes: 4 | 8, scalarOp: number, vectorOp: number): UnarySpec {
  const st = bytes === 4 ? T.f32 : T.f64;
  return {
    bytes,
    param: T.f64,
    prologue: (f, t) => {
      f.get(2);
      if (bytes === 4) f.emit(Op.f32_demote_f64);
      f.set(t.get(st, "sx"));
      f.get(t.get(st, "sx")).simd(bytes === 4 ? Simd.f32x4_splat : Simd.f64x2_splat).set(t.get(T.v128, "vx"));
    },
    vector: (f, t) => void f.get(t.get(T.v128, "vx")).simd(vectorOp),
    scalar: scalarOf(
      bytes,
      bytes === 4 ? Op.f32_load : Op.f64_load,
      bytes === 4 ? Op.f32_store : Op.f64_store,
      (f, t) => void f.get(t.get(st, "sx")).emit(scalarOp),
    ),
  };
}

/** Unary integer kernel dividing by the i32 param (truncating toward zero). */
function intDivide(bytes: 1 | 4 | 8, load: number, store: number, div: number): UnarySpec {
  return {
    bytes,
    param: T.i32,
    prologue: () => {},
    vector: null,
    scalar: scalarOf(bytes, load, store, (f) => {
      f.get(2);
      if (bytes === 8) f.emit(Op.i64_extend_i32_u);
      f.emit(div);
    }),
  };
}

const BINARY: Record<string, BinarySpec> = {
  f32_sum: f32(Simd.f32x4_add, Op.f32_add),
  f32_product: f32(Simd.f32x4_mul, Op.f32_mul),
  f32_min: f32(Simd.f32x4_min, Op.f32_min),
  f32_max: f32(Simd.f32x4_max, Op.f32_max),
  f64_sum: f64(Simd.f64x2_add, Op.f64_add),
  f64_product: f64(Simd.f64x2_mul, Op.f64_mul),
  f64_min: f64(Simd.f64x2_min, Op.f64_min),
  f64_max: f64(Simd.f64x2_max, Op.f64_max),
  i32_sum: i32(Simd.i32x4_add, core(Op.i32_add)),
  i32_product: i32(Simd.i32x4_mul, core(Op.i32_mul)),
  i32_min: i32(Simd.i32x4_min_s, selectBy(T.i32, Op.i32_lt_s)),
  i32_max: i32(Simd.i32x4_max_s, selectBy(T.i32, Op.i32_gt_s)),
  u32_min: i32(Simd.i32x4_min_u, selectBy(T.i32, Op.i32_lt_u)),
  u32_max: i32(Simd.i32x4_max_u, selectBy(T.i32, Op.i32_gt_u)),
  i64_sum: i64(simd(Simd.i64x2_add), core(Op.i64_add)),
  i64_product: i64(simd(Simd.i64x2_mul), core(Op.i64_mul)),
  i64_min: i64(bitselectBy(Simd.i64x2_lt_s), selectBy(T.i64, Op.i64_lt_s)),
  i64_max: i64(bitselectBy(Simd.i64x2_gt_s), selectBy(T.i64, Op.i64_gt_s)),
  i8_sum: i8(Simd.i8x16_add, Op.i32_load8_u, core(Op.i32_add)),
  i8_min: i8(Simd.i8x16_min_s, Op.i32_load8_s, selectBy(T.i32, Op.i32_lt_s)),
  i8_max: i8(Simd.i8x16_max_s, Op.i32_load8_s, selectBy(T.i32, Op.i32_gt_s)),
  u8_min: i8(Simd.i8x16_min_u, Op.i32_load8_u, selectBy(T.i32, Op.i32_lt_u)),
  u8_max: i8(Simd.i8x16_max_u, Op.i32_load8_u, selectBy(T.i32, Op.i32_gt_u)),
  bytes_band: i8(Simd.v128_and, Op.i32_load8_u, core(Op.i32_and)),
  bytes_bor: i8(Simd.v128_or, Op.i32_load8_u, core(Op.i32_or)),
  bytes_bxor: i8(Simd.v128_xor, Op.i32_load8_u, core(Op.i32_xor)),
  bf16_sum: halfBinary(BF16, F_SUM),
  bf16_product: halfBinary(BF16, F_MUL),
  bf16_min: halfBinary(BF16, F_MIN),
  bf16_max: halfBinary(BF16, F_MAX),
  f16_sum: halfBinary(F16, F_SUM),
  f16_product: halfBinary(F16, F_MUL),
  f16_min: halfBinary(F16, F_MIN),
  f16_max: halfBinary(F16, F_MAX),
};

const UNARY: Record<string, UnarySpec> = {
  f32_scale: floatUnary(4, Op.f32_mul, Simd.f32x4_mul),
  f64_scale: floatUnary(8, Op.f64_mul, Simd.f64x2_mul),
  f32_divide: floatUnary(4, Op.f32_div, Simd.f32x4_div),
  f64_divide: floatUnary(8, Op.f64_div, Simd.f64x2_div),
  bf16_scale: halfUnary(BF16, F_MUL),
  bf16_divide: halfUnary(BF16, F_DIV),
  f16_scale: halfUnary(F16, F_MUL),
  f16_divide: halfUnary(F16, F_DIV),
  i32_divide: intDivide(4, Op.i32_load, Op.i32_store, Op.i32_div_s),
  u32_divide: intDivide(4, Op.i32_load, Op.i32_store, Op.i32_div_u),
  i64_divide: intDivide(8, Op.i64_load, Op.i64_store, Op.i64_div_s),
  i8_divide: intDivide(1, Op.i32_load8_s, Op.i32_store8, Op.i32_div_s),
  u8_divide: intDivide(1, Op.i32_load8_u, Op.i32_store8, Op.i32_div_u),
};

/** Kernel families: dtypes whose bits combine the same way share a kernel. */
const FAMILY: Record<DType, Partial<Record<KernelOp, string>>> = {
  f32: { sum: "f32_sum", product: "f32_product", min: "f32_min", max: "f32_max" },
  f64: { sum: "f64_sum", product: "f64_product", min: "f64_min", max: "f64_max" },
  i32: { sum: "i32_sum", product: "i32_product", min: "i32_min", max: "i32_max" },
  u32: { sum: "i32_sum", product: "i32_product", min: "u32_min", max: "u32_max" },
  i64: { sum: "i64_sum", product: "i64_product", min: "i64_min", max: "i64_max" },
  i8: { sum: "i8_sum", min: "i8_min", max: "i8_max" },
  u8: { sum: "i8_sum", min: "u8_min", max: "u8_max" },
  bf16: { sum: "bf16_sum", product: "bf16_product", min: "bf16_min", max: "bf16_max" },
  f16: { sum: "f16_sum", product: "f16_product", min: "f16_min", max: "f16_max" },
};

const ELEM_BYTES: Record<DType, number> = {
  f32: 4,
  f64: 8,
  i32: 4,
  u32: 4,
  i64: 8,
  i8: 1,
  u8: 1,
  bf16: 2,
  f16: 2,
};
const INT: ReadonlySet<DType> = new Set(["i32", "u32", "i64", "i8", "u8"]);

/** The kernel computing `dst = op(dst, src)` for `dtype`, or undefined if there is none. */
export function binaryKernel(dtype: DType, op: KernelOp): KernelRef | undefined {
  if (op === "band" || op === "bor" || op === "bxor") {
    return INT.has(dtype) ? { name: `bytes_${op}`, unitsPerElement: ELEM_BYTES[dtype] } : undefined;
  }
  const name = FAMILY[dtype][op];
  return name === undefined ? undefined : { name, unitsPerElement: 1 };
}

/** The kernel multiplying by a factor (floats), or undefined. */
export function scaleKernel(dtype: DType): string | undefined {
  return `${dtype}_scale` in UNARY ? `${dtype}_scale` : undefined;
}

/** The kernel dividing by a divisor (floats: f64 param; integers: positive i32 param), or undefined. */
export function divideKernel(dtype: DType): string | undefined {
  return `${dtype}_divide` in UNARY ? `${dtype}_divide` : undefined;
}

/** The kernel module's bytes, importing `env.memory` shared (max 65536 pages) or not. */
export function kernelModuleBytes(shared: boolean): Uint8Array<ArrayBuffer> {
  const fns: Array<[string, FunctionBuilder]> = [
    ...Object.entries(BINARY).map(([n, s]): [string, FunctionBuilder] => [n, buildBinary(s)]),
    ...Object.entries(UNARY).map(([n, s]): [string, FunctionBuilder] => [n, buildUnary(s)]),
  ];
  return encodeModule({
    module: "env",
    name: "memory",
    shared,
    minPages: 0,
    maxPages: shared ? 65536 : undefined,
  }, fns);
}
