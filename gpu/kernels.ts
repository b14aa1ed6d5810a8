/**
 * @module
 * choir's PTX kernels on a device: loads the module of a dtype (or the nn module) once per device and
 * launches reduce kernels over lists of device pointers. The PTX itself is generated into
 * `kernels/reduce_ptx.ts` by `kernels/build.sh` from the CUDA C next to it.
 */

import { InvalidArgumentError } from "../errors.ts";
import { CudaModule, deviceInfo, type DevicePtr, type KernelArg, type Stream } from "./cuda.ts";
import { PTX } from "./kernels/reduce_ptx.ts";

/** Element types with PTX reduce kernels. */
export type KernelDType = "f32" | "f64" | "f16" | "bf16" | "i32";
/** Every dtype with reduce kernels. */
export const KERNEL_DTYPES: readonly KernelDType[] = ["f32", "f64", "f16", "bf16", "i32"];
/** Reduce ops of the kernels (the `ReduceOp` string values). */
export type KernelOp = "sum" | "product" | "min" | "max" | "avg" | "band" | "bor" | "bxor" | "premul_sum";
const FLOAT_OPS: readonly KernelOp[] = ["sum", "product", "min", "max", "avg", "premul_sum"];
const INT_OPS: readonly KernelOp[] = ["sum", "product", "min", "max", "avg", "band", "bor", "bxor"];

/** Inputs and outputs one reduce launch takes (the kernel's by-value pointer lists; `reduce.cu`). */
export const MAX_KERNEL_PTRS = 16;

/** Whether a PTX reduce kernel exists for `op` on `dtype`. */
export function hasReduceKernel(dtype: string, op: string): boolean {
  if (!(KERNEL_DTYPES as readonly string[]).includes(dtype)) return false;
  return ((dtype === "i32" ? INT_OPS : FLOAT_OPS) as readonly string[]).includes(op);
}

/** The kernel name of (`op`, `dtype`) in the PTX (`choir_reduce_sum_f32`). */
export function reduceKernelName(op: KernelOp, dtype: KernelDType): string {
  return `choir_reduce_${op}_${dtype}`;
}

const modules = new Map<string, CudaModule>();

/** The loaded module `name` (a reduce dtype or `nn`) on device `ordinal`, JIT-compiled on first use. */
export function kernelModule(name: keyof typeof PTX, ordinal = 0): CudaModule {
  const key = `${ordinal}:${name}`;
  let m = modules.get(key);
  if (!m) modules.set(key, m = new CudaModule(PTX[name], ordinal, `choir ${name} kernels`));
  return m;
}

const smCount = new Map<number, number>();

/** A grid for `work` independent items at 256 threads a block: enough blocks to fill the device, no more. */
export function gridFor(work: number, ordinal = 0): number {
  let sms = smCount.get(ordinal);
  if (sms === undefined) smCount.set(ordinal, sms = deviceInfo(ordinal).multiprocessors);
  return Math.max(1, Math.min(Math.ceil(work / 256), sms * 16));
}

/** What {@link launchReduce} reduces. */
export interface ReduceLaunch {
  /** Op and element type. */
  op: KernelOp;
  /** Element type. */
  dtype: KernelDType;
  /** Device addresses of the inputs (1 to 16), each holding `count` elements. */
  srcs: readonly DevicePtr[];
  /** Device addresses of the outputs (1 to 16); each gets the result. They may be inputs too. */
  dsts: readonly DevicePtr[];
  /** Elements per buffer. */
  count: number;
  /** PREMUL_SUM: the factor each input is multiplied by; AVG: the divisor (default: `srcs.length`). */
  factor?: number;
  /** The device whose context runs the kernel. */
  device?: number;
  /** The stream (default: the legacy default stream). */
  stream?: Stream;
}

/**
 * Queues one kernel: every output element `i` becomes `op(srcs[0][i], ..., srcs[k-1][i])`. Pointers
 * of other processes work once opened through CUDA IPC.
 */
export function launchReduce(l: ReduceLaunch): void {
  if (!hasReduceKernel(l.dtype, l.op)) {
    throw new InvalidArgumentError(`no GPU reduce kernel for ${l.op} on ${l.dtype}`, { op: "launchReduce" });
  }
  const nPtr = (name: string, list: readonly DevicePtr[]) => {
    if (list.length < 1 || list.length > MAX_KERNEL_PTRS) {
      throw new InvalidArgumentError(`${name}: 1 to ${MAX_KERNEL_PTRS} pointers, got ${list.length}`, {
        op: "launchReduce",
      });
    }
  };
  nPtr("srcs", l.srcs);
  nPtr("dsts", l.dsts);
  if (l.count === 0) return;
  const device = l.device ?? 0;
  const fn = kernelModule(l.dtype, device).function(reduceKernelName(l.op, l.dtype));
  const factor = l.factor ?? (l.op === "avg" ? l.srcs.length : 1);
  const perVector = 16 / ({ f32: 4, f64: 8, f16: 2, bf16: 2, i32: 4 } as const)[l.dtype];
  fn.launch(
    { grid: gridFor(Math.ceil(l.count / perVector), device), block: 256, stream: l.stream },
    [
      { ptrs: l.srcs },
      { u32: l.srcs.length },
      { ptrs: l.dsts },
      { u32: l.dsts.length },
      { u64: BigInt(l.count) },
      { f64: factor },
    ].map(packPtrs),
  );
}

type Arg = KernelArg | { ptrs: readonly DevicePtr[] };

// The pointer list is a struct { u64 p[16]; } passed by value: one argument of 128 bytes.
function packPtrs(a: Arg): KernelArg {
  if (!("ptrs" in a)) return a;
  const bytes = new BigUint64Array(MAX_KERNEL_PTRS);
  a.ptrs.forEach((p, i) => bytes[i] = p);
  return { bytes: new Uint8Array(bytes.buffer) };
}

/** Queues an nn kernel (`choir_gelu_f32` ...) from the nn module over `work` items. */
export function launchNn(
  name: string,
  work: number,
  args: readonly KernelArg[],
  device = 0,
  stream?: Stream,
): void {
  if (work === 0) return;
  kernelModule("nn", device).function(name).launch({ grid: gridFor(work, device), block: 256, stream }, args);
}
