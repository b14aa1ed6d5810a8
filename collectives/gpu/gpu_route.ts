/**
 * @module
 * Where a collective on GpuTensors goes: the CUDA IPC allreduce for same-host groups, else staging
 * through pinned host memory into the group's own host collectives. ProcessGroup calls these when a
 * tensor is a GpuTensor, loading this file on first GPU use (`gpu_lazy.ts`), and hands over a
 * {@link HostGroup}; the moving itself is in `gpu_staged.ts` and `allreduce_gpu_ipc.ts`.
 */

import { type CpuTensor, type DType, ReduceOp } from "../../dtype.ts";
import { InvalidArgumentError } from "../../errors.ts";
import type { GpuTensor } from "../../gpu/tensor.ts";
import { isGpuTensorLike } from "../../gpu_brand.ts";
import { type GpuOptions, IPC_MIN_BYTES } from "./gpu_options.ts";
import { allReduceGpuIpc, ipcSupported } from "./allreduce_gpu_ipc.ts";
import { stagedElementwise, type StagedTensor, stagedWhole } from "./gpu_staged.ts";

export { releaseStagingBuffers } from "./gpu_staged.ts";
export { releaseIpcMappings } from "./allreduce_gpu_ipc.ts";

/** What the GPU route reads of a collective's options (the rest passes through to the host collective). */
export interface GpuCallOptions {
  /** How GpuTensors move. */
  gpu?: GpuOptions;
  /** Timeout of the call. */
  timeoutMs?: number;
  /** The reduction (reducing collectives). */
  op?: ReduceOp;
  /** PREMUL_SUM's factor. */
  factor?: number;
  /** The root (rooted collectives). */
  root?: number;
}

/** The options of a host collective on a staged copy: the call's own, dtype tag set, no Work. */
export type HostOptions = GpuCallOptions & { dtype: DType; async: false; gpu: undefined };

/**
 * What the GPU route needs of its group: who it is, and the group's host collectives. Each collective
 * is issued at once, so it keeps its place in the group's order, and starts only once `after` resolves
 * (a staged chunk is on the host, or the IPC descriptor is ready). Point-to-point calls are not queued
 * and take no `after`. ProcessGroup hands these over; the route never calls the public API.
 */
export interface HostGroup {
  /** This rank. */
  readonly rank: number;
  /** Ranks in the group. */
  readonly size: number;
  /** Every rank of the group on this host. */
  readonly sameHost: boolean;
  /** Every rank a thread of this process (Worker ranks). */
  readonly sameProcess: boolean;
  /** allReduce of a host tensor, started after `after`. */
  allReduce(tensor: CpuTensor, opts: HostOptions, after: Promise<void>): Promise<void>;
  /** broadcast of a host tensor, started after `after`. */
  broadcast(tensor: CpuTensor, opts: HostOptions, after: Promise<void>): Promise<void>;
  /** reduce of a host tensor, started after `after`. */
  reduce(tensor: CpuTensor, opts: HostOptions, after: Promise<void>): Promise<void>;
  /** allGather of host tensors, started after `after`. */
  allGather(output: CpuTensor, input: CpuTensor, opts: HostOptions, after: Promise<void>): Promise<void>;
  /** reduceScatter of host tensors, started after `after`. */
  reduceScatter(output: CpuTensor, input: CpuTensor, opts: HostOptions, after: Promise<void>): Promise<void>;
  /** allToAll of host tensors, started after `after`. */
  allToAll(output: CpuTensor, input: CpuTensor, opts: HostOptions, after: Promise<void>): Promise<void>;
  /** gather of host tensors (output only on the root), started after `after`. */
  gather(output: CpuTensor | null, input: CpuTensor, opts: HostOptions, after: Promise<void>): Promise<void>;
  /** scatter of host tensors (input only on the root), started after `after`. */
  scatter(output: CpuTensor, input: CpuTensor | null, opts: HostOptions, after: Promise<void>): Promise<void>;
  /** send of a host tensor to `dst`, at once. */
  send(tensor: CpuTensor, opts: HostOptions & { dst: number }): Promise<void>;
  /** recv of a host tensor from `src`, at once. */
  recv(tensor: CpuTensor, opts: HostOptions & { src: number }): Promise<void>;
}

/** A pending GPU collective's use of device memory: bytes [lo, hi) of an allocation. */
interface MemoryUse {
  lo: bigint;
  hi: bigint;
  /** Whether the collective writes these bytes (copies up, reduces in place). */
  writes: boolean;
  /** Settles (either way) when the collective is over. */
  done: Promise<void>;
}

/** What one GPU collective touches: a tensor, and whether it writes it. */
interface Access {
  tensor: GpuTensor;
  writes: boolean;
}

/** The pending uses of each allocation (keyed by its owning tensor). */
const pending = new WeakMap<GpuTensor, Set<MemoryUse>>();

/**
 * Runs a GPU collective after the earlier ones whose memory it conflicts with (overlapping bytes, one
 * of the two writing), as a stream orders NCCL calls: their device work (copies up, IPC kernels) is
 * not ordered with this one's otherwise, so two `{ async: true }` calls on one tensor would race.
 * Disjoint views (DDP's buckets, halo exchanges) stay independent. `run` gets what to wait for (null
 * when nothing conflicts, so the common case adds no step).
 */
function inOrder(
  accesses: readonly Access[],
  run: (after: Promise<void> | null) => Promise<void>,
): Promise<void> {
  const mine = accesses.map(({ tensor, writes }) => {
    const lo = tensor.ptr;
    return { base: tensor.base, lo, hi: lo + BigInt(tensor.byteLength), writes };
  });
  const earlier = new Set<Promise<void>>();
  for (const m of mine) {
    for (const u of pending.get(m.base) ?? []) {
      if (m.lo < u.hi && u.lo < m.hi && (m.writes || u.writes)) earlier.add(u.done);
    }
  }
  const after = earlier.size === 0 ? null : Promise.all(earlier).then(() => {});
  const p = run(after);
  const done = p.then(() => {}, () => {});
  for (const m of mine) {
    if (m.hi <= m.lo) continue;
    const use: MemoryUse = { lo: m.lo, hi: m.hi, writes: m.writes, done };
    let set = pending.get(m.base);
    if (!set) pending.set(m.base, set = new Set());
    set.add(use);
    done.then(() => set.delete(use));
  }
  return p;
}

/** The options of a host collective on a staged copy of `t`: same call, dtype tag set, no Work. */
function hostOpts<T extends GpuCallOptions>(opts: T, t: GpuTensor): T & HostOptions {
  return { ...opts, dtype: t.dtype, async: false as const, gpu: undefined };
}

/** {@link stagedWhole} after the earlier GPU collectives on the same memory. */
function stagedInOrder(
  tensors: readonly StagedTensor[],
  issue: (hosts: CpuTensor[], ready: Promise<void>) => Promise<void>,
): Promise<void> {
  return inOrder(
    tensors.map((s) => ({ tensor: s.tensor, writes: s.up })),
    (after) => stagedWhole(tensors, issue, after),
  );
}

function gpuOnly(name: string, rank: number, ...ts: (CpuTensor | GpuTensor | null | undefined)[]): void {
  if (ts.some((t) => t !== null && t !== undefined && !isGpuTensorLike(t))) {
    throw new InvalidArgumentError(`${name}: mixing GpuTensor and CPU tensors in one call`, {
      rank,
      op: name,
    });
  }
}

/** allReduce of a GpuTensor: IPC on one host for supported ops (1 MiB and up by default), else staged. */
export function gpuAllReduce(g: HostGroup, t: GpuTensor, opts: GpuCallOptions): Promise<void> {
  const op = opts.op ?? ReduceOp.SUM;
  const path = opts.gpu?.path ?? "auto";
  const ipcOk = g.sameHost && ipcSupported(g.size, t.dtype, op);
  if (path === "ipc" && !ipcOk) {
    throw new InvalidArgumentError(
      `gpu.path "ipc" needs every rank on this host, at most 16 ranks and a kernel for ${op} on ${t.dtype}`,
      { rank: g.rank, op: "allReduce" },
    );
  }
  if (path === "ipc" || (path === "auto" && ipcOk && t.byteLength >= IPC_MIN_BYTES)) {
    if (op === ReduceOp.PREMUL_SUM && opts.factor === undefined) {
      throw new InvalidArgumentError("premul_sum needs { factor }", { rank: g.rank, op: "allReduce" });
    }
    return inOrder([{ tensor: t, writes: true }], (after) =>
      allReduceGpuIpc(
        g,
        t,
        {
          op,
          factor: opts.factor,
          keepMapped: opts.gpu?.keepMapped,
          timeoutMs: opts.timeoutMs,
          sameProcess: g.sameProcess, // Worker ranks: threads of this process
          after,
        },
      ));
  }
  return inOrder([{ tensor: t, writes: true }], (after) =>
    stagedElementwise(
      t,
      true,
      true,
      (host, _o, ready) => g.allReduce(host, hostOpts(opts, t), ready),
      opts.gpu,
      after,
    ));
}

/** broadcast of a GpuTensor, staged: the root copies down, the others copy up. */
export function gpuBroadcast(g: HostGroup, t: GpuTensor, opts: GpuCallOptions): Promise<void> {
  const root = opts.root ?? 0;
  return inOrder([{ tensor: t, writes: g.rank !== root }], (after) =>
    stagedElementwise(
      t,
      g.rank === root,
      g.rank !== root,
      (host, _o, ready) => g.broadcast(host, hostOpts(opts, t), ready),
      opts.gpu,
      after,
    ));
}

/** reduce of a GpuTensor, staged: every rank copies down, the root copies the result up. */
export function gpuReduce(g: HostGroup, t: GpuTensor, opts: GpuCallOptions): Promise<void> {
  const root = opts.root ?? 0;
  return inOrder([{ tensor: t, writes: g.rank === root }], (after) =>
    stagedElementwise(
      t,
      true,
      g.rank === root,
      (host, _o, ready) => g.reduce(host, hostOpts(opts, t), ready),
      opts.gpu,
      after,
    ));
}

/** allGather of GpuTensors, staged whole. */
export function gpuAllGather(
  g: HostGroup,
  out: GpuTensor,
  input: CpuTensor | GpuTensor,
  opts: GpuCallOptions,
): Promise<void> {
  gpuOnly("allGather", g.rank, input);
  const inp = input as GpuTensor;
  return stagedInOrder(
    [{ tensor: inp, down: true, up: false }, { tensor: out, down: false, up: true }],
    (h, ready) => g.allGather(h[1], h[0], hostOpts(opts, out), ready),
  );
}

/** reduceScatter of GpuTensors, staged whole. */
export function gpuReduceScatter(
  g: HostGroup,
  out: GpuTensor,
  input: CpuTensor | GpuTensor,
  opts: GpuCallOptions,
): Promise<void> {
  gpuOnly("reduceScatter", g.rank, input);
  const inp = input as GpuTensor;
  return stagedInOrder(
    [{ tensor: inp, down: true, up: false }, { tensor: out, down: false, up: true }],
    (h, ready) => g.reduceScatter(h[1], h[0], hostOpts(opts, out), ready),
  );
}

/** allToAll of GpuTensors, staged whole. */
export function gpuAllToAll(
  g: HostGroup,
  out: GpuTensor,
  input: CpuTensor | GpuTensor,
  opts: GpuCallOptions,
): Promise<void> {
  gpuOnly("allToAll", g.rank, input);
  const inp = input as GpuTensor;
  return stagedInOrder(
    [{ tensor: inp, down: true, up: false }, { tensor: out, down: false, up: true }],
    (h, ready) => g.allToAll(h[1], h[0], hostOpts(opts, out), ready),
  );
}

/** gather of GpuTensors (output only on the root), staged whole. */
export function gpuGather(
  g: HostGroup,
  out: CpuTensor | GpuTensor | null,
  input: GpuTensor,
  opts: GpuCallOptions,
): Promise<void> {
  gpuOnly("gather", g.rank, out);
  const list = [{ tensor: input, down: true, up: false }];
  if (out) list.push({ tensor: out as GpuTensor, down: false, up: true });
  return stagedInOrder(list, (h, ready) => g.gather(h[1] ?? null, h[0], hostOpts(opts, input), ready));
}

/** scatter of GpuTensors (input only on the root), staged whole. */
export function gpuScatter(
  g: HostGroup,
  out: GpuTensor,
  input: CpuTensor | GpuTensor | null,
  opts: GpuCallOptions,
): Promise<void> {
  gpuOnly("scatter", g.rank, input);
  const list = [{ tensor: out, down: false, up: true }];
  if (input) list.push({ tensor: input as GpuTensor, down: true, up: false });
  return stagedInOrder(list, (h, ready) => g.scatter(h[0], h[1] ?? null, hostOpts(opts, out), ready));
}

/** send of a GpuTensor: copied down whole, then sent (point-to-point calls are not queued). */
export function gpuSend(g: HostGroup, t: GpuTensor, opts: GpuCallOptions & { dst: number }): Promise<void> {
  return stagedInOrder(
    [{ tensor: t, down: true, up: false }],
    (h, ready) => ready.then(() => g.send(h[0], hostOpts(opts, t))),
  );
}

/** recv into a GpuTensor: received into pinned memory, then copied up. */
export function gpuRecv(g: HostGroup, t: GpuTensor, opts: GpuCallOptions & { src: number }): Promise<void> {
  return stagedInOrder(
    [{ tensor: t, down: false, up: true }],
    (h, ready) => ready.then(() => g.recv(h[0], hostOpts(opts, t))),
  );
}
