/**
 * @module
 * Allreduce of GpuTensors between ranks on one host, in device memory: each rank exports its buffer
 * with a CUDA IPC handle, maps every peer's, and one PTX kernel per rank reduces its 1/n slice of all
 * n inputs and writes the result into all n buffers. Ranks may share one GPU (NCCL refuses that).
 * Ranks that are threads of one process (Worker ranks) share each device's primary context, so they
 * exchange plain device pointers instead of IPC handles (a process cannot open its own handle).
 * Staging through host memory, for other hosts and other ops, is `gpu_staged.ts`.
 *
 * Steps (host collectives of the group, issued at call time so the call keeps its place in order):
 * allGather of a 96-byte descriptor (handle, offset, size, dtype, op) once the tensor's queued work is
 * done; map, reduce the slice, unmap; then a 4-byte MAX allReduce of an error flag, which also keeps
 * every rank from returning (and freeing its buffer) before the others have written into it.
 * Cost: 2 small host collectives + n IPC opens (unless mapped) + one kernel moving (n + n) / n of the
 * buffer per rank: busbw is bounded by device memory bandwidth, not by any link.
 */

import { CollectiveMismatchError, InvalidArgumentError, PeerLostError } from "../../errors.ts";
import { DTYPES, dtypeSize, REDUCE_OPS, type ReduceOp } from "../../dtype.ts";
import {
  addressRange,
  CudaEvent,
  type DevicePtr,
  EventFlags,
  IPC_HANDLE_SIZE,
  ipcCloseMemHandle,
  ipcGetMemHandle,
  ipcOpenMemHandle,
  synchronize,
} from "../../gpu/cuda.ts";
import { type KernelDType, type KernelOp, launchReduce, MAX_KERNEL_PTRS } from "../../gpu/kernels.ts";
import type { GpuTensor } from "../../gpu/tensor.ts";

/** Bytes of one rank's descriptor. */
const DESC = 96;
/** Slices start at multiples of this many elements (keeps 16-byte vector loads aligned). */
const ALIGN_ELEMENTS = 64;

/** What the IPC allreduce needs of the group: its rank, size and two host collectives. */
export interface IpcGroup {
  /** This rank. */
  readonly rank: number;
  /** Ranks in the group. */
  readonly size: number;
  /** The group's allGather on host tensors, issued now and started after `after`. */
  allGather(
    output: Uint8Array,
    input: Uint8Array,
    opts: { dtype: "u8"; async: false; gpu: undefined; timeoutMs?: number },
    after: Promise<void>,
  ): Promise<void>;
  /** The group's allReduce on a host tensor, issued now and started after `after`. */
  allReduce(
    tensor: Int32Array,
    opts: { op: ReduceOp; dtype: "i32"; async: false; gpu: undefined; timeoutMs?: number },
    after: Promise<void>,
  ): Promise<void>;
}

/** Peers' allocations kept mapped (`keepMapped`), by device and handle. */
const mapped = new Map<string, { ptr: DevicePtr; device: number }>();

/** Unmaps every peer allocation kept mapped by `keepMapped` calls. Call it on every rank before peers free. */
export function releaseIpcMappings(): void {
  for (const m of mapped.values()) ipcCloseMemHandle(m.ptr, m.device);
  mapped.clear();
}

function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** Options of {@link allReduceGpuIpc}. */
export interface IpcAllReduceOptions {
  /** The reduction. */
  op: ReduceOp;
  /** PREMUL_SUM's factor. */
  factor?: number;
  /** Keep peers' buffers mapped after the call. */
  keepMapped?: boolean;
  /** Timeout of each host step. */
  timeoutMs?: number;
  /**
   * Every rank is a thread of this process (Worker ranks): peers' device pointers are used directly,
   * without IPC. They must then all be on one device.
   */
  sameProcess?: boolean;
  /**
   * Resolves when the earlier GPU collectives on this memory are done: the peers may read it only
   * then (gpu_route.ts orders the calls on one allocation).
   */
  after?: Promise<void> | null;
}

/** Whether the IPC path can run this call (kernel exists, few enough ranks for one launch). */
export function ipcSupported(size: number, dtype: string, op: string): boolean {
  return size <= MAX_KERNEL_PTRS && ["f32", "f64", "f16", "bf16", "i32"].includes(dtype) &&
    (dtype === "i32" ? op !== "premul_sum" : !["band", "bor", "bxor"].includes(op));
}

/** Allreduce of `t` in place across the group's ranks, all on this host, through CUDA IPC. */
export function allReduceGpuIpc(g: IpcGroup, t: GpuTensor, opts: IpcAllReduceOptions): Promise<void> {
  const { rank, size } = g;
  if (!ipcSupported(size, t.dtype, opts.op)) {
    throw new InvalidArgumentError(`no GPU IPC allreduce for ${opts.op} on ${t.dtype} over ${size} ranks`, {
      rank,
      op: "allReduce",
    });
  }
  const es = dtypeSize(t.dtype);
  // Describe this rank's buffer: IPC exports whole allocations, so send the base's handle and the offset.
  const { base } = addressRange(t.ptr, t.device);
  const mine = new Uint8Array(DESC);
  const dv = new DataView(mine.buffer);
  if (opts.sameProcess) dv.setBigUint64(0, base, true); // the base's address: one context per process
  else mine.set(ipcGetMemHandle(base, t.device), 0);
  dv.setBigUint64(IPC_HANDLE_SIZE, t.ptr - base, true);
  dv.setBigUint64(IPC_HANDLE_SIZE + 8, BigInt(t.byteLength), true);
  dv.setUint32(IPC_HANDLE_SIZE + 16, DTYPES.indexOf(t.dtype), true);
  dv.setUint32(IPC_HANDLE_SIZE + 20, REDUCE_OPS.indexOf(opts.op), true);
  dv.setUint32(IPC_HANDLE_SIZE + 24, t.device, true);
  const all = new Uint8Array(DESC * size);
  // The peers read this buffer: only once the work queued on it so far is done.
  const queued = queuedWorkDone(t.device);
  const ready = opts.after ? Promise.all([opts.after, queued]).then(() => {}) : queued;
  const host = { async: false as const, gpu: undefined, timeoutMs: opts.timeoutMs };
  const gathered = g.allGather(all, mine, { ...host, dtype: "u8" }, ready);

  let failure: unknown = null;
  const reduced = gathered.then(() => reduceSlice(all, rank, size, t, es, opts)).then(
    () => 0,
    (e) => {
      failure = e;
      return 1;
    },
  );
  const flag = new Int32Array(1);
  const agreed = g.allReduce(
    flag,
    { ...host, op: "max" as ReduceOp, dtype: "i32" },
    reduced.then((v) => void (flag[0] = v)),
  );
  return agreed.then(() => {
    if (failure !== null) throw failure;
    if (flag[0] !== 0) {
      throw new PeerLostError("a peer failed its part of the GPU IPC allreduce", { rank, op: "allReduce" });
    }
  });
}

async function queuedWorkDone(device: number): Promise<void> {
  const ev = new CudaEvent(device, EventFlags.disableTiming);
  try {
    ev.record();
    await ev.done();
  } finally {
    ev.destroy();
  }
}

async function reduceSlice(
  all: Uint8Array,
  rank: number,
  size: number,
  t: GpuTensor,
  es: number,
  opts: IpcAllReduceOptions,
): Promise<void> {
  const ptrs: DevicePtr[] = [];
  const opened: DevicePtr[] = [];
  let launched = false;
  try {
    for (let r = 0; r < size; r++) {
      const d = new DataView(all.buffer, r * DESC, DESC);
      const bytes = Number(d.getBigUint64(IPC_HANDLE_SIZE + 8, true));
      const dt = d.getUint32(IPC_HANDLE_SIZE + 16, true), op = d.getUint32(IPC_HANDLE_SIZE + 20, true);
      if (bytes !== t.byteLength || DTYPES[dt] !== t.dtype || REDUCE_OPS[op] !== opts.op) {
        throw new CollectiveMismatchError(
          { bytes: t.byteLength, dtype: t.dtype, op: opts.op },
          { bytes, dtype: DTYPES[dt] ?? dt, op: REDUCE_OPS[op] ?? op },
          { rank, op: "allReduce", peer: r },
        );
      }
      if (r === rank) {
        ptrs.push(t.ptr);
        continue;
      }
      const offset = d.getBigUint64(IPC_HANDLE_SIZE, true);
      if (opts.sameProcess) {
        const device = d.getUint32(IPC_HANDLE_SIZE + 24, true);
        if (device !== t.device) {
          throw new InvalidArgumentError(
            `Worker ranks on GPUs ${t.device} and ${device}: the direct allreduce needs one device ` +
              `(use gpu: { path: "staged" })`,
            { rank, op: "allReduce", peer: r },
          );
        }
        ptrs.push(d.getBigUint64(0, true) + offset);
        continue;
      }
      const handle = all.subarray(r * DESC, r * DESC + IPC_HANDLE_SIZE);
      const key = `${t.device}:${hex(handle)}`;
      let peerBase = mapped.get(key)?.ptr;
      if (peerBase === undefined) {
        peerBase = ipcOpenMemHandle(handle, t.device);
        if (opts.keepMapped) mapped.set(key, { ptr: peerBase, device: t.device });
        else opened.push(peerBase);
      }
      ptrs.push(peerBase + offset);
    }
    // This rank's slice [lo, hi) of the elements, on ALIGN_ELEMENTS boundaries.
    const blocks = Math.ceil(t.length / ALIGN_ELEMENTS);
    const lo = Math.min(t.length, Math.floor((blocks * rank) / size) * ALIGN_ELEMENTS);
    const hi = Math.min(t.length, Math.floor((blocks * (rank + 1)) / size) * ALIGN_ELEMENTS);
    if (hi > lo) {
      const at = ptrs.map((p) => p + BigInt(lo * es));
      launchReduce({
        op: opts.op as KernelOp,
        dtype: t.dtype as KernelDType,
        srcs: at,
        dsts: at,
        count: hi - lo,
        factor: opts.op === "avg" ? size : opts.factor ?? 1,
        device: t.device,
      });
      launched = true;
    }
    await queuedWorkDone(t.device);
  } catch (e) {
    // The kernel may still use the peers' buffers: let it finish before their mappings close and
    // before the caller, told of the failure, frees or reuses its tensor.
    if (launched) {
      try {
        synchronize(t.device);
      } catch { /* the first error is the one to report */ }
    }
    throw e;
  } finally {
    for (const p of opened) ipcCloseMemHandle(p, t.device);
  }
}
