/**
 * @module
 * GpuTensor: a dense array in device memory (device, dtype, shape, byte length) with host copies,
 * `zeros`, views, `free`/`using`, and row-major `matmul` through cuBLAS. Collectives accept it
 * (`collectives/gpu/gpu_staged.ts`, `collectives/gpu/allreduce_gpu_ipc.ts`); kernels are in `kernels.ts`.
 */

import { ARRAY_TYPE, type CpuTensor, type DType, dtypeSize } from "../dtype.ts";
import { InvalidArgumentError } from "../errors.ts";
import { GPU_TENSOR } from "../gpu_brand.ts";
import { cublas, type GemmDType } from "./cublas.ts";
import { copyDtoD, copyDtoH, copyHtoD, type DevicePtr, memAlloc, memFree, memset8 } from "./cuda.ts";

/** Options of the GpuTensor constructors. */
export interface GpuTensorOptions {
  /** Device ordinal (default 0). */
  device?: number;
  /** Shape (default: one dimension of the element count). */
  shape?: readonly number[];
}

function dtypeOf(a: CpuTensor): DType | null {
  if (a instanceof Float32Array) return "f32";
  if (a instanceof Float64Array) return "f64";
  if (a instanceof Int32Array) return "i32";
  if (a instanceof BigInt64Array) return "i64";
  if (a instanceof Uint8Array) return "u8";
  if (a instanceof Int8Array) return "i8";
  if (a instanceof Uint32Array) return "u32";
  return null; // Uint16Array: f16 or bf16, the caller must say which
}

function elements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!(Number.isInteger(d) && d >= 0)) {
      throw new InvalidArgumentError(`bad shape [${shape}]`, { op: "GpuTensor" });
    }
    n *= d;
  }
  return n;
}

/** A tensor in GPU memory. Owning tensors free their memory with {@link GpuTensor.free}; views never do. */
export class GpuTensor {
  /** Device ordinal. */
  readonly device: number;
  /** Element type. */
  readonly dtype: DType;
  /** Shape; its product is {@link length}. */
  readonly shape: readonly number[];
  /** Number of elements. */
  readonly length: number;
  /** Bytes of data. */
  readonly byteLength: number;
  readonly #ptr: DevicePtr;
  readonly #owner: GpuTensor | null;
  #freed = false;

  private constructor(
    device: number,
    dtype: DType,
    shape: readonly number[],
    ptr: DevicePtr,
    owner: GpuTensor | null,
  ) {
    this.device = device;
    this.dtype = dtype;
    this.shape = [...shape];
    this.length = elements(shape);
    this.byteLength = this.length * dtypeSize(dtype);
    this.#ptr = ptr;
    this.#owner = owner;
  }

  /** Uninitialised device memory for `shape` elements of `dtype`. */
  static empty(dtype: DType, shape: readonly number[] | number, device = 0): GpuTensor {
    const s = typeof shape === "number" ? [shape] : shape;
    return new GpuTensor(device, dtype, s, memAlloc(elements(s) * dtypeSize(dtype), device), null);
  }

  /** Zero-filled device memory for `shape` elements of `dtype`. */
  static zeros(dtype: DType, shape: readonly number[] | number, device = 0): GpuTensor {
    const t = GpuTensor.empty(dtype, shape, device);
    memset8(t.ptr, 0, t.byteLength, device);
    return t;
  }

  /**
   * A device copy of `data`. The dtype follows the array type; a Uint16Array needs `dtype` (`f16` or
   * `bf16`).
   */
  static fromHost(data: CpuTensor, opts: GpuTensorOptions & { dtype?: DType } = {}): GpuTensor {
    const dtype = opts.dtype ?? dtypeOf(data);
    if (dtype === null) {
      throw new InvalidArgumentError("a Uint16Array needs { dtype: 'f16' | 'bf16' }", {
        op: "GpuTensor.fromHost",
      });
    }
    if (ARRAY_TYPE[dtype].name !== data.constructor.name) {
      throw new InvalidArgumentError(`dtype ${dtype} does not fit a ${data.constructor.name}`, {
        op: "GpuTensor.fromHost",
      });
    }
    const shape = opts.shape ?? [data.length];
    if (elements(shape) !== data.length) {
      throw new InvalidArgumentError(`shape [${shape}] does not hold ${data.length} elements`, {
        op: "GpuTensor.fromHost",
      });
    }
    const t = GpuTensor.empty(dtype, shape, opts.device ?? 0);
    copyHtoD(t.ptr, data, t.byteLength, t.device);
    return t;
  }

  /** The device address of element 0. Throws once the memory is freed. */
  get ptr(): DevicePtr {
    if (this.#freed || this.#owner?.freed) {
      throw new InvalidArgumentError("GpuTensor used after free", { op: "GpuTensor" });
    }
    return this.#ptr;
  }

  /** Whether the memory was freed (by this tensor or, for a view, its owner). */
  get freed(): boolean {
    return this.#freed || (this.#owner?.freed ?? false);
  }

  /** The owning tensor whose allocation this one views (itself when it owns its memory). */
  get base(): GpuTensor {
    return this.#owner ?? this;
  }

  /** Whether this tensor owns its memory (views do not). */
  get owning(): boolean {
    return this.#owner === null;
  }

  /** A copy on the host, in `out` when given (its length must match), else in a new typed array. */
  toHost(out?: CpuTensor): CpuTensor {
    const dst = out ?? new ARRAY_TYPE[this.dtype](this.length);
    if (dst.byteLength !== this.byteLength) {
      throw new InvalidArgumentError(`toHost into ${dst.byteLength} bytes, tensor has ${this.byteLength}`, {
        op: "GpuTensor.toHost",
      });
    }
    copyDtoH(dst, this.ptr, this.byteLength, this.device);
    return dst;
  }

  /** Overwrites the tensor with `data` (same byte length). */
  copyFromHost(data: CpuTensor): void {
    if (data.byteLength !== this.byteLength) {
      throw new InvalidArgumentError(`copy of ${data.byteLength} bytes into ${this.byteLength}`, {
        op: "GpuTensor.copyFromHost",
      });
    }
    copyHtoD(this.ptr, data, this.byteLength, this.device);
  }

  /** Overwrites the tensor with another device tensor of the same byte length. */
  copyFrom(src: GpuTensor): void {
    if (src.byteLength !== this.byteLength) {
      throw new InvalidArgumentError(`copy of ${src.byteLength} bytes into ${this.byteLength}`, {
        op: "GpuTensor.copyFrom",
      });
    }
    copyDtoD(this.ptr, src.ptr, this.byteLength, this.device);
  }

  /** Sets every byte to zero. */
  zero(): void {
    memset8(this.ptr, 0, this.byteLength, this.device);
  }

  /** A flat view of `length` elements from element `offset` (shares memory; never frees it). */
  view(offset: number, length: number, shape: readonly number[] = [length]): GpuTensor {
    if (
      !(Number.isInteger(offset) && Number.isInteger(length) && offset >= 0 && length >= 0) ||
      offset + length > this.length || elements(shape) !== length
    ) {
      throw new InvalidArgumentError(
        `view [${offset}, +${length}) as [${shape}] of ${this.length} elements`,
        {
          op: "GpuTensor.view",
        },
      );
    }
    const ptr = this.ptr + BigInt(offset * dtypeSize(this.dtype));
    return new GpuTensor(this.device, this.dtype, shape, ptr, this.#owner ?? this);
  }

  /** The same memory with another shape of equal element count. */
  reshape(shape: readonly number[]): GpuTensor {
    return this.view(0, this.length, shape);
  }

  /** Frees the device memory (owning tensors; a no-op for views and when already freed). */
  free(): void {
    if (this.#freed || this.#owner !== null) return;
    this.#freed = true;
    memFree(this.#ptr, this.device);
  }

  /** Same as {@link free}, for `using`. */
  [Symbol.dispose](): void {
    this.free();
  }

  /** `GpuTensor(f32, [2, 3], cuda:0)`. */
  toString(): string {
    return `GpuTensor(${this.dtype}, [${this.shape}], cuda:${this.device})`;
  }
}

// The mark collectives check before loading the GPU route (`gpu_brand.ts`), on the prototype: no
// per-tensor cost, and not part of the class's type.
Object.defineProperty(GpuTensor.prototype, GPU_TENSOR, { value: true });

/** Whether `t` is a {@link GpuTensor}. */
export function isGpuTensor(t: unknown): t is GpuTensor {
  return t instanceof GpuTensor;
}

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** Use A transposed (A is stored `k x m`). */
  transA?: boolean;
  /** Use B transposed (B is stored `n x k`). */
  transB?: boolean;
  /** Scale of the product (default 1). */
  alpha?: number;
  /** `out = alpha A B + beta out` (default 0; needs `out`). */
  beta?: number;
  /** The result tensor (`m x n`, same dtype and device); a new one when omitted. */
  out?: GpuTensor;
  /** Let f32 products use TF32 tensor cores (faster, about 10 bits of mantissa). */
  tf32?: boolean;
}

/**
 * Row-major `C = alpha op(A) op(B) + beta C` for 2-D f32, f16 or bf16 tensors on one device, through
 * cuBLAS (f32: `cublasSgemm_v2`; f16/bf16: `cublasGemmEx` with f32 accumulation). Row-major data is
 * the transpose of column-major, so it computes `C^T = op(B)^T op(A)^T`, which needs no copies.
 */
export function matmul(a: GpuTensor, b: GpuTensor, opts: MatmulOptions = {}): GpuTensor {
  const fail = (msg: string) => new InvalidArgumentError(msg, { op: "matmul" });
  if (a.shape.length !== 2 || b.shape.length !== 2) throw fail(`2-D tensors needed, got ${a} and ${b}`);
  if (a.dtype !== b.dtype || a.device !== b.device) throw fail(`${a} and ${b} differ in dtype or device`);
  if (a.dtype !== "f32" && a.dtype !== "f16" && a.dtype !== "bf16") throw fail(`no GEMM for ${a.dtype}`);
  const [ar, ac] = a.shape, [br, bc] = b.shape;
  const m = opts.transA ? ac : ar, k = opts.transA ? ar : ac;
  const kb = opts.transB ? bc : br, n = opts.transB ? br : bc;
  if (k !== kb) throw fail(`inner dimensions differ: ${k} and ${kb}`);
  const out = opts.out ?? GpuTensor.empty(a.dtype, [m, n], a.device);
  if (
    out.dtype !== a.dtype || out.device !== a.device || out.shape.length !== 2 || out.shape[0] !== m ||
    out.shape[1] !== n
  ) {
    throw fail(`out is ${out}, expected [${m}, ${n}] ${a.dtype} on cuda:${a.device}`);
  }
  const beta = opts.beta ?? 0;
  if (beta !== 0 && !opts.out) throw fail("beta needs out");
  const h = cublas(a.device), ta = opts.transA ? "T" : "N", tb = opts.transB ? "T" : "N";
  const lda = Math.max(1, ac), ldb = Math.max(1, bc), ldc = Math.max(1, n);
  if (m === 0 || n === 0) return out;
  if (a.dtype === "f32" && !opts.tf32) {
    h.sgemm(tb, ta, n, m, k, opts.alpha ?? 1, b.ptr, ldb, a.ptr, lda, beta, out.ptr, ldc);
  } else {
    h.gemmEx(
      a.dtype as GemmDType,
      tb,
      ta,
      n,
      m,
      k,
      opts.alpha ?? 1,
      b.ptr,
      ldb,
      a.ptr,
      lda,
      beta,
      out.ptr,
      ldc,
      {
        tf32: opts.tf32,
      },
    );
  }
  return out;
}
