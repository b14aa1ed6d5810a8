/**
 * @module
 * The SIMD kernels applied to ordinary typed arrays by staging them through a small private wasm
 * memory in blocks (copy in, run the kernel, copy out). Which arrays take this path is `reduce.ts`'s call.
 */

import {
  ARRAY_TYPE,
  type CpuTensor,
  type DType,
  dtypeSize,
  type ReduceOp,
  type TensorConstructor,
} from "../../dtype.ts";
import { bindKernels, type KernelTable } from "./wasm_reducer.ts";

/**
 * Bytes per array per block. Measured on the 2-core EPYC dev box (best of 5, GB/s of dst, f32 max /
 * i32 sum / u8 sum): 16 KiB 2.5/2.9/2.7, 32 KiB 2.8/3.1/2.8, 64 KiB 2.9/3.1/3.1, 256 KiB 2.9/3.2/3.1
 * at 16 MiB; in cache (256 KiB arrays) 64 KiB and 256 KiB blocks tie. Two 64 KiB blocks stay in L2.
 */
const BLOCK = 65536;

type View = CpuTensor & {
  set(a: CpuTensor, offset?: number): void;
  subarray(a: number, b: number): CpuTensor;
};
const CTOR = ARRAY_TYPE;

interface Stage {
  kernels: KernelTable;
  /** Per dtype: a view of block A (offset 0) and of block B (offset BLOCK), BLOCK bytes each. */
  a: Record<DType, View>;
  b: Record<DType, View>;
}

let stage: Stage | undefined;

function scratch(): Stage {
  if (stage === undefined) {
    const memory = new WebAssembly.Memory({ initial: (2 * BLOCK) / 65536, maximum: (2 * BLOCK) / 65536 });
    const buf = memory.buffer;
    const a = {} as Record<DType, View>, b = {} as Record<DType, View>;
    for (const [dtype, C] of Object.entries(CTOR) as Array<[DType, TensorConstructor]>) {
      const per = BLOCK / dtypeSize(dtype);
      a[dtype] = new C(buf, 0, per) as View;
      b[dtype] = new C(buf, BLOCK, per) as View;
    }
    stage = { kernels: bindKernels(memory), a, b };
  }
  return stage;
}

/** `dst[i] = op(dst[i], src[i])` with the wasm kernel for (dtype, op), which must exist. */
export function stagedReduce(dtype: DType, op: ReduceOp, dst: CpuTensor, src: CpuTensor): void {
  const st = scratch();
  const kernel = st.kernels.binary[dtype][op]!;
  const a = st.a[dtype], b = st.b[dtype];
  const d = dst as View, s = src as View;
  const per = a.length, n = d.length;
  if (n <= per) {
    a.set(d);
    b.set(s);
    kernel(0, BLOCK, n);
    d.set(n === per ? a : a.subarray(0, n));
    return;
  }
  for (let off = 0; off < n; off += per) {
    const len = Math.min(per, n - off);
    a.set(d.subarray(off, off + len));
    b.set(s.subarray(off, off + len));
    kernel(0, BLOCK, len);
    d.set(len === per ? a : a.subarray(0, len), off);
  }
}

/** Applies the unary `kernel` (with parameter `x`) to `dst`, staged through block A one block at a time. */
function stagedUnary(
  dtype: DType,
  dst: CpuTensor,
  kernel: (ptr: number, count: number, x: number) => void,
  x: number,
) {
  const st = scratch();
  const a = st.a[dtype];
  const per = a.length, n = dst.length;
  const d = dst as View;
  for (let off = 0; off < n; off += per) {
    const len = Math.min(per, n - off);
    a.set(len === n ? d : d.subarray(off, off + len));
    kernel(0, len, x);
    d.set(len === per ? a : a.subarray(0, len), off);
  }
}

/** `dst[i] *= factor` with the wasm scale kernel (float dtypes). */
export function stagedScale(dtype: DType, dst: CpuTensor, factor: number): void {
  stagedUnary(dtype, dst, scratch().kernels.scale[dtype]!, factor);
}

/** `dst[i] /= divisor` with the wasm divide kernel (floats, or integers with a positive divisor). */
export function stagedDivide(dtype: DType, dst: CpuTensor, divisor: number): void {
  stagedUnary(dtype, dst, scratch().kernels.divide[dtype]!, divisor);
}
