/**
 * @module
 * Where a collective on GpuTensors goes: the CUDA IPC allreduce for same-host groups, else staging
 * through pinned host memory into the group's own host collectives. ProcessGroup calls these when a
 * tensor is a GpuTensor; the moving itself is in `gpu_staged.ts` and `allreduce_gpu_ipc.ts`.
 */

import type {
  AllToAllOptions,
  OpOptions,
  P2POptions,
  ProcessGroup,
  ReduceOptions,
  RootOptions,
} from "./process_group.ts";
import { type CpuTensor, ReduceOp } from "../dtype.ts";
import { InvalidArgumentError } from "../errors.ts";
import { GpuTensor } from "../gpu/tensor.ts";
import { gated } from "./gate.ts";
import { allReduceGpuIpc, ipcSupported } from "./allreduce_gpu_ipc.ts";
import { stagedElementwise, type StagedTensor, stagedWhole } from "./gpu_staged.ts";

/** Smallest allReduce that `gpu.path: "auto"` sends through IPC (below it, staging is cheaper). */
export const IPC_MIN_BYTES = 1 << 20;

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
function hostOpts<T extends OpOptions>(opts: T, t: GpuTensor, ready: Promise<void>): T & { async: false } {
  return gated({ ...opts, dtype: t.dtype, async: false as const, gpu: undefined }, ready);
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
  if (ts.some((t) => t !== null && t !== undefined && !(t instanceof GpuTensor))) {
    throw new InvalidArgumentError(`${name}: mixing GpuTensor and CPU tensors in one call`, {
      rank,
      op: name,
    });
  }
}

/** allReduce of a GpuTensor: IPC on one host for supported ops (1 MiB and up by default), else staged. */
export function gpuAllReduce(pg: ProcessGroup, t: GpuTensor, opts: ReduceOptions): Promise<void> {
  const op = opts.op ?? ReduceOp.SUM;
  const path = opts.gpu?.path ?? "auto";
  const ipcOk = pg.sameHost && ipcSupported(pg.size, t.dtype, op);
  if (path === "ipc" && !ipcOk) {
    throw new InvalidArgumentError(
      `gpu.path "ipc" needs every rank on this host, at most 16 ranks and a kernel for ${op} on ${t.dtype}`,
      { rank: pg.rank, op: "allReduce" },
    );
  }
  if (path === "ipc" || (path === "auto" && ipcOk && t.byteLength >= IPC_MIN_BYTES)) {
    if (op === ReduceOp.PREMUL_SUM && opts.factor === undefined) {
      throw new InvalidArgumentError("premul_sum needs { factor }", { rank: pg.rank, op: "allReduce" });
    }
    return inOrder([{ tensor: t, writes: true }], (after) =>
      allReduceGpuIpc(
        {
          rank: pg.rank,
          size: pg.size,
          allGather: (o, i, p) => pg.allGather(o, i, p),
          allReduce: (x, p) => pg.allReduce(x, p),
        },
        t,
        {
          op,
          factor: opts.factor,
          keepMapped: opts.gpu?.keepMapped,
          timeoutMs: opts.timeoutMs,
          sameProcess: pg.backend === "worker", // Worker ranks: threads of this process
          after,
        },
      ));
  }
  return inOrder([{ tensor: t, writes: true }], (after) =>
    stagedElementwise(
      t,
      true,
      true,
      (host, _o, ready) => pg.allReduce(host, hostOpts(opts, t, ready)),
      opts.gpu,
      after,
    ));
}

/** broadcast of a GpuTensor, staged: the root copies down, the others copy up. */
export function gpuBroadcast(pg: ProcessGroup, t: GpuTensor, opts: RootOptions): Promise<void> {
  const root = opts.root ?? 0;
  return inOrder([{ tensor: t, writes: pg.rank !== root }], (after) =>
    stagedElementwise(
      t,
      pg.rank === root,
      pg.rank !== root,
      (host, _o, ready) => pg.broadcast(host, hostOpts(opts, t, ready)),
      opts.gpu,
      after,
    ));
}

/** reduce of a GpuTensor, staged: every rank copies down, the root copies the result up. */
export function gpuReduce(pg: ProcessGroup, t: GpuTensor, opts: ReduceOptions & RootOptions): Promise<void> {
  const root = opts.root ?? 0;
  return inOrder([{ tensor: t, writes: pg.rank === root }], (after) =>
    stagedElementwise(
      t,
      true,
      pg.rank === root,
      (host, _o, ready) => pg.reduce(host, hostOpts(opts, t, ready)),
      opts.gpu,
      after,
    ));
}

/** allGather of GpuTensors, staged whole. */
export function gpuAllGather(
  pg: ProcessGroup,
  out: GpuTensor,
  input: CpuTensor | GpuTensor,
  opts: OpOptions,
): Promise<void> {
  gpuOnly("allGather", pg.rank, input);
  const inp = input as GpuTensor;
  return stagedInOrder(
    [{ tensor: inp, down: true, up: false }, { tensor: out, down: false, up: true }],
    (h, ready) => pg.allGather(h[1], h[0], hostOpts(opts, out, ready)),
  );
}

/** reduceScatter of GpuTensors, staged whole. */
export function gpuReduceScatter(
  pg: ProcessGroup,
  out: GpuTensor,
  input: CpuTensor | GpuTensor,
  opts: ReduceOptions,
): Promise<void> {
  gpuOnly("reduceScatter", pg.rank, input);
  const inp = input as GpuTensor;
  return stagedInOrder(
    [{ tensor: inp, down: true, up: false }, { tensor: out, down: false, up: true }],
    (h, ready) => pg.reduceScatter(h[1], h[0], hostOpts(opts, out, ready)),
  );
}

/** allToAll of GpuTensors, staged whole. */
export function gpuAllToAll(
  pg: ProcessGroup,
  out: GpuTensor,
  input: CpuTensor | GpuTensor,
  opts: AllToAllOptions,
): Promise<void> {
  gpuOnly("allToAll", pg.rank, input);
  const inp = input as GpuTensor;
  return stagedInOrder(
    [{ tensor: inp, down: true, up: false }, { tensor: out, down: false, up: true }],
    (h, ready) => pg.allToAll(h[1], h[0], hostOpts(opts, out, ready)),
  );
}

/** gather of GpuTensors (output only on the root), staged whole. */
export function gpuGather(
  pg: ProcessGroup,
  out: CpuTensor | GpuTensor | null,
  input: GpuTensor,
  opts: RootOptions,
): Promise<void> {
  gpuOnly("gather", pg.rank, out);
  const list = [{ tensor: input, down: true, up: false }];
  if (out) list.push({ tensor: out as GpuTensor, down: false, up: true });
  return stagedInOrder(list, (h, ready) => pg.gather(h[1] ?? null, h[0], hostOpts(opts, input, ready)));
}

/** scatter of GpuTensors (input only on the root), staged whole. */
export function gpuScatter(
  pg: ProcessGroup,
  out: GpuTensor,
  input: CpuTensor | GpuTensor | null,
  opts: RootOptions,
): Promise<void> {
  gpuOnly("scatter", pg.rank, input);
  const list = [{ tensor: out, down: false, up: true }];
  if (input) list.push({ tensor: input as GpuTensor, down: true, up: false });
  return stagedInOrder(list, (h, ready) => pg.scatter(h[0], h[1] ?? null, hostOpts(opts, out, ready)));
}

/** send of a GpuTensor: copied down whole, then sent (point-to-point calls are not queued). */
export function gpuSend(pg: ProcessGroup, t: GpuTensor, opts: P2POptions & { dst: number }): Promise<void> {
  return stagedInOrder(
    [{ tensor: t, down: true, up: false }],
    (h, ready) =>
      ready.then(() => pg.send(h[0], { ...opts, dtype: t.dtype, async: false as const, gpu: undefined })),
  );
}

/** recv into a GpuTensor: received into pinned memory, then copied up. */
export function gpuRecv(pg: ProcessGroup, t: GpuTensor, opts: P2POptions & { src: number }): Promise<void> {
  return stagedInOrder(
    [{ tensor: t, down: false, up: true }],
    (h, ready) =>
      ready.then(() => pg.recv(h[0], { ...opts, dtype: t.dtype, async: false as const, gpu: undefined })),
  );
}
