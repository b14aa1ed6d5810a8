/**
 * @module
 * {@link WasmReducer}: the SIMD kernels instantiated over one `WebAssembly.Memory` (shared or not),
 * run on byte offsets inside it. Placing data in the memory (copies, mmap) is left to the caller.
 */

import { InvalidArgumentError } from "../../errors.ts";
import { type DType, DTYPES, dtypeSize, opSupports, REDUCE_OPS, type ReduceOp } from "../../dtype.ts";
import { binaryKernel, divideKernel, kernelModuleBytes, type KernelOp, scaleKernel } from "./wasm_kernels.ts";

/** A bound binary kernel: `(dstByte, srcByte, count)` in elements of its dtype. */
export type BinaryKernel = (dst: number, src: number, count: number) => void;
/** A bound unary kernel: `(byte, count, x)`. */
export type UnaryKernel = (ptr: number, count: number, x: number) => void;

/** The kernels bound to one memory, looked up by dtype and op. */
export interface KernelTable {
  /** `binary[dtype][op]`: present where a kernel exists (AVG and PREMUL_SUM map to SUM). */
  readonly binary: Record<DType, Partial<Record<ReduceOp, BinaryKernel>>>;
  /** Scale kernels of the float dtypes. */
  readonly scale: Partial<Record<DType, UnaryKernel>>;
  /** Divide kernels. */
  readonly divide: Partial<Record<DType, UnaryKernel>>;
}

const modules: { plain?: WebAssembly.Module; shared?: WebAssembly.Module } = {};

function moduleFor(shared: boolean): WebAssembly.Module {
  const key = shared ? "shared" : "plain";
  return modules[key] ??= new WebAssembly.Module(kernelModuleBytes(shared));
}

/** The element-wise op a reduce step applies: AVG and PREMUL_SUM accumulate as SUM. */
export function kernelOpOf(op: ReduceOp): KernelOp {
  return op === "avg" || op === "premul_sum" ? "sum" : op;
}

/** Instantiates the kernels over `memory` (shared or not) without any argument checks. */
export function bindKernels(memory: WebAssembly.Memory): KernelTable {
  const shared = typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
  const exports = new WebAssembly.Instance(moduleFor(shared), { env: { memory } }).exports;
  const binary = {} as Record<DType, Partial<Record<ReduceOp, BinaryKernel>>>;
  const scale: Partial<Record<DType, UnaryKernel>> = {};
  const divide: Partial<Record<DType, UnaryKernel>> = {};
  for (const dtype of DTYPES) {
    const row: Partial<Record<ReduceOp, BinaryKernel>> = {};
    for (const op of REDUCE_OPS) {
      const k = opSupports(op, dtype) ? binaryKernel(dtype, kernelOpOf(op)) : undefined;
      if (k === undefined) continue;
      const fn = exports[k.name] as BinaryKernel;
      const units = k.unitsPerElement;
      row[op] = units === 1 ? fn : (dst, src, count) => fn(dst, src, count * units);
    }
    binary[dtype] = row;
    const s = scaleKernel(dtype), d = divideKernel(dtype);
    if (s !== undefined) scale[dtype] = exports[s] as UnaryKernel;
    if (d !== undefined) divide[dtype] = exports[d] as UnaryKernel;
  }
  return { binary, scale, divide };
}

/** Options for a memory that {@link WasmReducer.create} allocates. */
export interface WasmMemoryOptions {
  /** Initial size in 64 KiB pages (default 1). */
  initialPages?: number;
  /** Maximum size in pages (required when shared; default 65536 then). */
  maximumPages?: number;
  /** Allocate a shared memory (backed by a SharedArrayBuffer). */
  shared?: boolean;
}

/**
 * The SIMD reduce kernels bound to one `WebAssembly.Memory`. Offsets are byte offsets into that
 * memory; element counts are in elements of the dtype. Any byte alignment is accepted (aligned data
 * runs faster). Calls are synchronous and bounds-checked against the memory's current size.
 */
export class WasmReducer {
  /** The memory the kernels read and write. */
  readonly memory: WebAssembly.Memory;
  private readonly kernels: KernelTable;
  private buffer: ArrayBufferLike;

  /** Binds the kernels to `memory` (a non-shared or shared memory; a 1-page one when omitted). */
  constructor(memory: WebAssembly.Memory = new WebAssembly.Memory({ initial: 1 })) {
    this.memory = memory;
    this.buffer = memory.buffer;
    this.kernels = bindKernels(memory);
  }

  /** Allocates a memory with `options` and binds the kernels to it. */
  static create(options: WasmMemoryOptions = {}): WasmReducer {
    const shared = options.shared ?? false;
    const maximum = options.maximumPages ?? (shared ? 65536 : undefined);
    const desc: WebAssembly.MemoryDescriptor = { initial: options.initialPages ?? 1, shared };
    if (maximum !== undefined) desc.maximum = maximum;
    return new WasmReducer(new WebAssembly.Memory(desc));
  }

  /** Whether {@link WasmReducer.reduce} has a kernel for (`dtype`, `op`). */
  static supports(dtype: DType, op: ReduceOp): boolean {
    return opSupports(op, dtype) && binaryKernel(dtype, kernelOpOf(op)) !== undefined;
  }

  /** Every (dtype, op) pair {@link WasmReducer.reduce} supports. */
  static supportedPairs(): Array<{ dtype: DType; op: ReduceOp }> {
    return DTYPES.flatMap((dtype) =>
      REDUCE_OPS.filter((op) => WasmReducer.supports(dtype, op)).map((op) => ({ dtype, op }))
    );
  }

  /** Whether {@link WasmReducer.scale} (floats) and {@link WasmReducer.divide} support `dtype`. */
  static supportsScale(dtype: DType): boolean {
    return scaleKernel(dtype) !== undefined;
  }

  /**
   * `dst[i] = op(dst[i], src[i])` for `count` elements of `dtype` at the byte offsets. AVG and
   * PREMUL_SUM apply SUM (the caller scales). Throws InvalidArgumentError for an unsupported pair or
   * a range outside the memory.
   */
  reduce(dtype: DType, op: ReduceOp, dstByteOffset: number, srcByteOffset: number, count: number): void {
    const k = this.kernels.binary[dtype]?.[op];
    if (k === undefined) {
      throw new InvalidArgumentError(`no wasm kernel for ${op} on ${dtype}`, { op: "WasmReducer.reduce" });
    }
    const bytes = count * dtypeSize(dtype);
    this.check(dstByteOffset, bytes, "reduce");
    this.check(srcByteOffset, bytes, "reduce");
    k(dstByteOffset, srcByteOffset, count);
  }

  /** `x[i] *= factor` for `count` float elements at `byteOffset` (f32/f16/bf16: factor rounded to f32). */
  scale(dtype: DType, byteOffset: number, count: number, factor: number): void {
    const fn = this.unaryFor(this.kernels.scale[dtype], dtype, "scale");
    this.check(byteOffset, count * dtypeSize(dtype), "scale");
    fn(byteOffset, count, factor);
  }

  /**
   * `x[i] /= divisor` for `count` elements at `byteOffset`. Floats divide in their precision (f16/bf16
   * via f32); integers truncate toward zero and need a positive integer divisor below 2^31.
   */
  divide(dtype: DType, byteOffset: number, count: number, divisor: number): void {
    const fn = this.unaryFor(this.kernels.divide[dtype], dtype, "divide");
    const float = dtype === "f32" || dtype === "f64" || dtype === "f16" || dtype === "bf16";
    if (!float && !(Number.isInteger(divisor) && divisor > 0 && divisor < 2 ** 31)) {
      throw new InvalidArgumentError(`integer divisor must be in [1, 2^31), got ${divisor}`, {
        op: "WasmReducer.divide",
      });
    }
    this.check(byteOffset, count * dtypeSize(dtype), "divide");
    fn(byteOffset, count, divisor);
  }

  /** The unary kernel, or an InvalidArgumentError naming `what` and `dtype`. */
  private unaryFor(fn: UnaryKernel | undefined, dtype: DType, what: string): UnaryKernel {
    if (fn === undefined) {
      throw new InvalidArgumentError(`no wasm ${what} kernel for ${dtype}`, { op: `WasmReducer.${what}` });
    }
    return fn;
  }

  /** Throws unless [offset, offset + bytes) lies inside the memory (refreshing a stale buffer). */
  private check(offset: number, bytes: number, what: string): void {
    if (!(Number.isInteger(offset) && offset >= 0 && Number.isInteger(bytes) && bytes >= 0)) {
      throw new InvalidArgumentError(`bad range: offset ${offset}, ${bytes} bytes`, {
        op: `WasmReducer.${what}`,
      });
    }
    // The cached buffer only shrinks from our view (detached: 0; a grown shared one: its old size).
    if (offset + bytes <= this.buffer.byteLength) return;
    this.buffer = this.memory.buffer;
    const size = this.buffer.byteLength;
    if (offset + bytes > size) {
      throw new InvalidArgumentError(
        `range [${offset}, ${offset} + ${bytes}) is not inside the ${size}-byte memory`,
        { op: `WasmReducer.${what}` },
      );
    }
  }
}
