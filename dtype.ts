/**
 * @module
 * Data types and reduction operations: the names users pass, the typed arrays that carry them, and
 * the small numeric codes that go on the wire. The kernels that apply an op live in `collectives/kernels/`.
 */

import { InvalidArgumentError } from "./errors.ts";

/** Element types a CPU tensor may hold. f16 and bf16 travel in a `Uint16Array` with this tag. */
export type DType = "f32" | "f64" | "i32" | "i64" | "u8" | "i8" | "u32" | "f16" | "bf16";

/** Every dtype, in wire-code order (the index is the code in a frame header). */
export const DTYPES: readonly DType[] = ["f32", "f64", "i32", "i64", "u8", "i8", "u32", "f16", "bf16"];

/** A CPU tensor: a typed array of one of the supported element types. */
export type CpuTensor =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Int8Array
  | Uint32Array
  | Uint16Array;

/** A constructor of the typed array that carries a dtype. */
export interface TensorConstructor {
  /** A zero-filled array of `length` elements. */
  new (length: number): CpuTensor;
  /** A view of `length` elements of `buffer` from `byteOffset`. */
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): CpuTensor;
  /** The constructor's name (`Float32Array`, ...). */
  readonly name: string;
  /** Bytes per element. */
  readonly BYTES_PER_ELEMENT: number;
}

/** The typed-array constructor of each dtype (f16 and bf16 share `Uint16Array`). */
export const ARRAY_TYPE: Readonly<Record<DType, TensorConstructor>> = {
  f32: Float32Array,
  f64: Float64Array,
  i32: Int32Array,
  i64: BigInt64Array,
  u8: Uint8Array,
  i8: Int8Array,
  u32: Uint32Array,
  f16: Uint16Array,
  bf16: Uint16Array,
};

/** Reduction operations, as in torch.distributed's `ReduceOp`. */
export const ReduceOp = {
  /** Element-wise sum. */
  SUM: "sum",
  /** Element-wise product. */
  PRODUCT: "product",
  /** Element-wise minimum (NaN wins, as in IEEE minimum). */
  MIN: "min",
  /** Element-wise maximum (NaN wins, as in IEEE maximum). */
  MAX: "max",
  /** Sum divided by the number of ranks (integer dtypes truncate toward zero). */
  AVG: "avg",
  /** Bitwise and (integer dtypes only). */
  BAND: "band",
  /** Bitwise or (integer dtypes only). */
  BOR: "bor",
  /** Bitwise xor (integer dtypes only). */
  BXOR: "bxor",
  /** Each input multiplied by a scalar factor, then summed (float dtypes only). */
  PREMUL_SUM: "premul_sum",
} as const;

/** One of the {@link ReduceOp} values. */
export type ReduceOp = typeof ReduceOp[keyof typeof ReduceOp];

/** Every reduce op, in wire-code order. */
export const REDUCE_OPS: readonly ReduceOp[] = Object.values(ReduceOp);

/** Size in bytes of one element of `dtype`. */
export function dtypeSize(dtype: DType): number {
  switch (dtype) {
    case "f64":
    case "i64":
      return 8;
    case "f32":
    case "i32":
    case "u32":
      return 4;
    case "f16":
    case "bf16":
      return 2;
    case "u8":
    case "i8":
      return 1;
  }
}

/** Whether `dtype` is a floating-point type. */
export function isFloat(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f64" || dtype === "f16" || dtype === "bf16";
}

/** The wire code of a dtype (its index in {@link DTYPES}). */
export function dtypeCode(dtype: DType): number {
  return DTYPES.indexOf(dtype);
}

/** The wire code of a reduce op (its index in {@link REDUCE_OPS}), or 255 for "no op". */
export function reduceOpCode(op: ReduceOp | undefined): number {
  return op === undefined ? 255 : REDUCE_OPS.indexOf(op);
}

/**
 * The dtype a typed array carries. A `Uint16Array` is ambiguous (f16 or bf16) and needs `tag`;
 * when given, `tag` must agree with the array type.
 */
export function dtypeOf(t: CpuTensor, tag?: DType): DType {
  let d: DType;
  if (t instanceof Float32Array) d = "f32";
  else if (t instanceof Float64Array) d = "f64";
  else if (t instanceof Int32Array) d = "i32";
  else if (t instanceof BigInt64Array) d = "i64";
  else if (t instanceof Uint8Array) d = "u8";
  else if (t instanceof Int8Array) d = "i8";
  else if (t instanceof Uint32Array) d = "u32";
  else if (t instanceof Uint16Array) {
    if (tag !== "f16" && tag !== "bf16") {
      throw new InvalidArgumentError(
        `a Uint16Array needs { dtype: "f16" } or { dtype: "bf16" }, got ${tag ?? "none"}`,
      );
    }
    return tag;
  } else {
    throw new InvalidArgumentError(`unsupported tensor type ${Object.prototype.toString.call(t)}`);
  }
  if (tag !== undefined && tag !== d) {
    throw new InvalidArgumentError(`dtype ${tag} given for a ${d} array`);
  }
  return d;
}

/** Whether `op` may be applied to `dtype` (bitwise ops need integers, PREMUL_SUM needs floats). */
export function opSupports(op: ReduceOp, dtype: DType): boolean {
  if (op === "band" || op === "bor" || op === "bxor") return !isFloat(dtype);
  if (op === "premul_sum") return isFloat(dtype);
  return true;
}

/** The bytes of a tensor as a `Uint8Array` view (no copy). */
export function bytesOf(t: CpuTensor): Uint8Array {
  return new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
}

/** A view of `length` elements of `t` starting at element `start`, with `t`'s array type (no copy). */
export function sliceView<T extends CpuTensor>(t: T, start: number, length: number): T {
  const ctor = t.constructor as new (buf: ArrayBufferLike, byteOffset: number, length: number) => T;
  return new ctor(t.buffer, t.byteOffset + start * t.BYTES_PER_ELEMENT, length);
}

/** A view of `length` elements of `like`'s array type over `buffer` at `byteOffset` (no copy). */
export function viewLike<T extends CpuTensor>(
  like: T,
  buffer: ArrayBufferLike,
  byteOffset: number,
  length: number,
): T {
  const ctor = like.constructor as new (buf: ArrayBufferLike, byteOffset: number, length: number) => T;
  return new ctor(buffer, byteOffset, length);
}

/** A new zero-filled tensor of the same array type as `t` with `length` elements. */
export function allocLike<T extends CpuTensor>(t: T, length: number): T {
  const ctor = t.constructor as new (length: number) => T;
  return new ctor(length);
}
