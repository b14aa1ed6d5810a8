/**
 * @module
 * The shared-arena backend: runs a group's collectives straight on the shared-memory segment when
 * every rank is on this host (tiny ones in the call slots, large ones through the chunk pipeline,
 * symmetric-memory tensors in place), and allocates that symmetric memory (`pg.alloc`). Its waits keep
 * their own deadlines; ordering, the monitor and breaking on failure are the op queue's.
 */

import {
  allocLike,
  ARRAY_TYPE,
  bytesOf,
  type CpuTensor,
  type DType,
  dtypeCode,
  DTYPES,
  ReduceOp,
  reduceOpCode,
  sliceView,
} from "../../dtype.ts";
import type { Backend, OpRun } from "../backend.ts";
import { type Call, opName } from "../comm.ts";
import type { OpQueue } from "../op_queue.ts";
import { contribution, copyOf, finishReduction } from "../reduce_steps.ts";
import { overlaps } from "../validate.ts";
import type { ArenaHost } from "../../transports/arena_host.ts";
import {
  allocSymmetric,
  type SymmetricAllocation,
  type SymmetricOptions,
} from "../../transports/shm/symmetric.ts";
import { allGatherShm } from "./allgather_shm.ts";
import { allReduceShmChunks, allReduceShmSmall } from "./allreduce_shm.ts";
import { allReduceSymmetric } from "./allreduce_symmetric.ts";
import { barrierShm } from "./barrier_shm.ts";
import { broadcastShm, broadcastShmSmall } from "./broadcast_shm.ts";
import { reduceShm } from "./reduce_shm.ts";
import { reduceScatterShm } from "./reducescatter_shm.ts";
import { Arena, type Fingerprint, type WaitContext } from "./shm_arena.ts";
import { LoopTurns } from "../loop_turns.ts";

/** The shared arena of one group (see the module doc). */
export class ArenaBackend implements Backend {
  readonly #arena: Arena;
  readonly #queue: OpQueue;
  // One context and fingerprint object per group, refilled per call: collectives run one at a time
  // (later ones queue behind a running one), and tiny ones feel every allocation.
  readonly #ctx: WaitContext;
  readonly #fp: Fingerprint = { kind: 0, op: 0, dtype: 0, count: 0, root: -1, alloc: -1, offset: 0 };
  readonly #symmetric = new Map<ArrayBufferLike, SymmetricAllocation>();
  #symmetricClosed = 0;
  /** When a run of calls that completed at once next lets the event loop turn. */
  readonly #turns = new LoopTurns();
  /** The call the wait context is filled for (the tiny path's body reads it). */
  #ctxCall: Call | null = null;

  /** @param host the transport's arena region. @param chunkBytes the group's chunk size. @param queue the group's op queue. */
  constructor(host: ArenaHost, chunkBytes: number, queue: OpQueue) {
    this.#arena = new Arena(host, chunkBytes);
    this.#queue = queue;
    this.#ctx = {
      op: "",
      deadline: 0,
      timeoutMs: 0,
      globalRank: host.rank,
      globalOf: Array.from({ length: host.size }, (_, r) => r),
      describe: (fp, other) => {
        const d: Record<string, number | string> = {
          op: opName(fp.kind, fp.op),
          dtype: DTYPES[fp.dtype] ?? fp.dtype,
          count: fp.count,
          root: fp.root,
        };
        // Where an allReduce runs in place on symmetric memory on either side: which memory, where.
        if (fp.alloc >= 0 || other.alloc >= 0) {
          d.memory = fp.alloc >= 0 ? "symmetric" : "ordinary array";
          d.allocation = fp.alloc >= 0 ? fp.alloc : "none";
          d.offset = fp.alloc >= 0 ? fp.offset : "none";
        }
        return d;
      },
    };
  }

  /** Bytes of each chunk buffer (the chunk size the arena actually runs with). */
  get chunkBytes(): number {
    return this.#arena.chunkBytes;
  }

  /**
   * Whether `tensor` lies inside this rank's own array of one of this group's symmetric allocations
   * (then a large allReduce runs in place on it). A view of the same memory that reaches outside this
   * rank's array (into a peer's, say) is ordinary memory: it is copied through the arena.
   */
  isSymmetric(tensor: CpuTensor): boolean {
    const sym = this.#symmetric.get(tensor.buffer);
    if (sym === undefined) return false;
    const start = sym.offsets[this.#arena.rank];
    return tensor.byteOffset >= start && tensor.byteOffset + tensor.byteLength <= start + sym.bytes;
  }

  /** Makes a nap of every wait in flight throw `err` (the group's abort()). */
  abort(err: Error): void {
    this.#ctx.aborted = err;
  }

  /**
   * Shows `call`'s fingerprint on the arena and waits for every rank's: a collective that runs over
   * the channels on one host starts with it, so a rank running another one on the arena is a mismatch
   * at the first step, not a wait until the timeout.
   */
  handshake(call: Call, timeoutMs: number): Promise<void> {
    return this.#arena.handshake(this.#fingerprint(call), this.#context(call, timeoutMs));
  }

  allReduce(r: OpRun, tensor: CpuTensor): Promise<void> {
    return this.#run(
      r,
      r.route.algorithm === "shm_small" ? this.#allReduceSmall : this.#allReduceLarge,
      tensor,
    );
  }

  /**
   * The latency path of a tiny allReduce (HostCalls checked it, routed it to `shm_small` and found the
   * queue idle): what {@link allReduce} does for it, with no run record and no generic body, so the
   * JIT sees one monomorphic path. `call` may be a record its caller reuses: nothing keeps it past the
   * call (the recorder copies its fields; a call that turns asynchronous keeps the queue busy, so no
   * other call takes this path meanwhile).
   */
  allReduceTiny(call: Call, tensor: CpuTensor, timeoutMs: number, factor: number | undefined): Promise<void> {
    const q = this.#queue;
    try {
      q.check(call.name);
      this.#context(call, timeoutMs);
      this.#fingerprint(call);
      const p = q.untimed(call, this.#tinyBody, tensor, factor) ?? this.#turns.next();
      return p === undefined ? RESOLVED : q.track(p);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  readonly #tinyBody = (tensor: CpuTensor, factor: number | undefined): Promise<void> | undefined => {
    const call = this.#ctxCall!;
    const op = call.op!;
    if (op === ReduceOp.PREMUL_SUM) contribution(op, call.dtype, factor, tensor);
    const p = allReduceShmSmall(this.#arena, call, this.#fp, tensor, this.#ctx);
    if (op !== ReduceOp.AVG) return p;
    // AVG divides after the sum; the record's fields are read before a later call can refill it.
    const dtype = call.dtype;
    if (p) return p.then(() => finishReduction(op, dtype, tensor, this.#arena.size));
    finishReduction(op, dtype, tensor, this.#arena.size);
    return undefined;
  };

  /** The tiny allReduce, in the call slots: synchronous when every peer is on time. */
  readonly #allReduceSmall = (r: OpRun, tensor: CpuTensor): Promise<void> | undefined => {
    const call = r.call;
    const op = call.op!;
    if (op === ReduceOp.PREMUL_SUM) contribution(op, call.dtype, r.factor, tensor);
    const p = allReduceShmSmall(this.#arena, call, this.#fp, tensor, this.#ctx);
    if (op !== ReduceOp.AVG) return p;
    if (p) return p.then(() => finishReduction(op, call.dtype, tensor, this.#arena.size));
    finishReduction(op, call.dtype, tensor, this.#arena.size);
    return undefined;
  };

  /** The larger allReduce: the chunk pipeline, or in place on symmetric memory. */
  readonly #allReduceLarge = async (r: OpRun, tensor: CpuTensor): Promise<void> => {
    const { call, route } = r;
    const op = call.op!;
    const fp = this.#fp;
    const ctx = this.#ctx;
    contribution(op, call.dtype, r.factor, tensor);
    if (route.algorithm === "shm_symmetric") {
      // Every rank must run on the same allocation at the same offset (and an ordinary array on one
      // rank against symmetric memory on another is no allReduce either): the fingerprint says which.
      const sym = this.#symmetric.get(tensor.buffer)!;
      fp.alloc = sym.index;
      fp.offset = tensor.byteOffset - sym.offsets[this.#arena.rank];
      await allReduceSymmetric(this.#arena, call, fp, sym, tensor, ctx);
    } else await allReduceShmChunks(this.#arena, call, fp, tensor, ctx);
    finishReduction(op, call.dtype, tensor, this.#arena.size);
  };

  broadcast(r: OpRun, tensor: CpuTensor): Promise<void> {
    if (r.route.algorithm === "shm_small") {
      return this.#runWith(r, (ctx, fp) => broadcastShmSmall(this.#arena, r.call, fp, tensor, ctx));
    }
    return this.#runWith(r, (ctx, fp) => broadcastShm(this.#arena, r.call, fp, tensor, ctx));
  }

  reduce(r: OpRun, tensor: CpuTensor): Promise<void> {
    const { call } = r;
    const op = call.op!;
    const isRoot = this.#arena.rank === call.root;
    return this.#runWith(r, async (ctx, fp) => {
      // Other ranks' tensors are unchanged: they contribute a scaled copy for PREMUL_SUM.
      const input = contribution(op, call.dtype, r.factor, tensor, isRoot ? undefined : () => copyOf(tensor));
      await reduceShm(this.#arena, call, fp, input, ctx);
      if (isRoot) finishReduction(op, call.dtype, tensor, this.#arena.size);
    });
  }

  allGather(r: OpRun, output: CpuTensor, input: CpuTensor): Promise<void> {
    return this.#runWith(r, (ctx, fp) => allGatherShm(this.#arena, fp, output, input, ctx));
  }

  allGatherList(r: OpRun, outputs: readonly CpuTensor[], input: CpuTensor): Promise<void> {
    const len = input.length;
    return this.#runWith(r, async (ctx, fp) => {
      const all = allocLike(input, this.#arena.size * len);
      await allGatherShm(this.#arena, fp, all, input, ctx);
      outputs.forEach((t, p) => bytesOf(t).set(bytesOf(sliceView(all, p * len, len))));
    });
  }

  reduceScatter(r: OpRun, output: CpuTensor, whole: CpuTensor | null, fill: () => CpuTensor): Promise<void> {
    const { call } = r;
    const op = call.op!;
    // The input is only read: a copy is needed only to scale it, to join a list, or when the output
    // overlaps it (an in-place reduce-scatter writes its block while the other ranks still read it).
    return this.#runWith(r, async (ctx, fp) => {
      const work = whole !== null && !overlaps(output, whole) ? whole : fill();
      const mine = contribution(op, call.dtype, r.factor, work, work === whole ? fill : undefined);
      await reduceScatterShm(this.#arena, call, fp, output, mine, ctx);
      finishReduction(op, call.dtype, output, this.#arena.size);
    });
  }

  barrier(r: OpRun): Promise<void> {
    return this.#runWith(r, (ctx, fp) => barrierShm(this.#arena, fp, ctx));
  }

  /**
   * A tensor of `length` elements of `dtype` in memory every rank of the host maps: from the
   * transport (Worker ranks share one memory) or a new shm segment named through the store.
   */
  async alloc(
    dtype: DType,
    length: number,
    transportAlloc: ((index: number, bytes: number) => Promise<SymmetricAllocation>) | undefined,
    segment: Omit<SymmetricOptions, "index" | "bytes">,
  ): Promise<CpuTensor> {
    const ctor = ARRAY_TYPE[dtype];
    const index = this.#symmetric.size + this.#symmetricClosed;
    const bytes = Math.max(64, length * ctor.BYTES_PER_ELEMENT);
    const sym = transportAlloc
      ? await transportAlloc(index, bytes)
      : await allocSymmetric({ ...segment, index, bytes });
    this.#symmetric.set(sym.buffer, sym);
    return new ctor(sym.buffer, sym.offsets[this.#arena.rank], length);
  }

  /** Unmaps the symmetric memory (destroy()). */
  close(): void {
    for (const sym of this.#symmetric.values()) sym.close();
    this.#symmetricClosed += this.#symmetric.size;
    this.#symmetric.clear();
  }

  /**
   * Queues `body` on the group's order; it spins first and only then naps (without blocking the event
   * loop), with the call's own deadline, so no timer is armed per call and a tiny collective whose
   * peers are on time runs through without leaving this call. Such calls never let the event loop
   * run, so a loop of them would starve timers and sockets (the store server rank 0 runs, the store
   * watches): about every 20 ms (loop_turns.ts) one call completes after a macrotask instead. With nothing
   * in flight it runs here, without a closure: `body` gets `r` and `x` (the group's wait context and
   * fingerprint are filled for the call first).
   */
  #run<X>(r: OpRun, body: (r: OpRun, x: X) => Promise<void> | undefined, x: X): Promise<void> {
    const q = this.#queue;
    if (r.after === undefined && q.idle) {
      try {
        q.check(r.call.name);
        this.#fill(r);
        const p = q.untimed(r.call, body, r, x) ?? this.#turns.next();
        return p === undefined ? RESOLVED : q.track(p);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return q.order(r.after, () => {
      q.check(r.call.name);
      this.#fill(r);
      return q.untimed(r.call, body, r, x) ?? this.#turns.next();
    });
  }

  /** {@link #run} for a body over the group's wait context and fingerprint (the ops off the latency path). */
  #runWith(r: OpRun, body: (ctx: WaitContext, fp: Fingerprint) => Promise<void> | undefined): Promise<void> {
    return this.#run(r, this.#callWith, body);
  }

  readonly #callWith = (
    _r: OpRun,
    body: (ctx: WaitContext, fp: Fingerprint) => Promise<void> | undefined,
  ): Promise<void> | undefined => body(this.#ctx, this.#fp);

  /** Fills the group's wait context and fingerprint for `r`'s call. */
  #fill(r: OpRun): void {
    this.#context(r.call, r.timeoutMs);
    this.#fingerprint(r.call);
  }

  /** The group's wait context, filled for `call`. */
  #context(call: Call, timeoutMs: number): WaitContext {
    const ctx = this.#ctx;
    this.#ctxCall = call;
    ctx.op = call.name;
    ctx.deadline = 0; // set by the first wait that naps
    ctx.timeoutMs = timeoutMs;
    return ctx;
  }

  /** The group's fingerprint, filled for `call`. */
  #fingerprint(call: Call): Fingerprint {
    const fp = this.#fp;
    fp.kind = call.kind;
    fp.op = reduceOpCode(call.op);
    fp.dtype = dtypeCode(call.dtype);
    fp.count = call.count;
    fp.root = call.root;
    fp.alloc = -1; // ordinary memory unless allReduce finds a symmetric tensor
    fp.offset = 0;
    return fp;
  }
}

const RESOLVED: Promise<void> = Promise.resolve();
