/**
 * @module
 * The ProcessGroup: torch.distributed's collective API over a Transport, or straight on the shared
 * arena when every rank is on one host. It checks arguments, orders collectives, stamps each with a
 * sequence number, picks the algorithm and enforces timeouts; the algorithms live one per file.
 */

import {
  ChoirError,
  CollectiveTimeoutError,
  GroupDestroyedError,
  InvalidArgumentError,
  PeerLostError,
} from "../errors.ts";
import type { Transport } from "../transports/transport.ts";
import { setHeaderNames } from "../transports/frame.ts";
import { allGatherRing } from "./allgather_ring.ts";
import { allReduceDirect } from "./allreduce_direct.ts";
import {
  allReduceHierarchical,
  type HierarchicalComms,
  hierarchicalComms,
} from "./allreduce_hierarchical.ts";
import { allReduceRecursiveDoubling } from "./allreduce_recursive_doubling.ts";
import { allReduceRing } from "./allreduce_ring.ts";
import { barrierDissemination } from "./barrier_dissemination.ts";
import { broadcastBinomial } from "./broadcast_binomial.ts";
import { broadcastChain } from "./broadcast_chain.ts";
import { type Call, Comm, OpKind } from "./comm.ts";
import {
  allocLike,
  ARRAY_TYPE,
  bytesOf,
  type CpuTensor,
  type DType,
  dtypeCode,
  dtypeOf,
  DTYPES,
  isFloat,
  opSupports,
  REDUCE_OPS,
  ReduceOp,
  reduceOpCode,
  sliceView,
} from "./dtype.ts";
import { planAllReduce, planBroadcast, planReduce } from "./plan.ts";
import { divideInto, scaleInto } from "./reduce/mod.ts";
import { reduceBinomial } from "./reduce_binomial.ts";
import { reduceChain } from "./reduce_chain.ts";
import { reduceScatterRing } from "./reducescatter_ring.ts";
import { Watchdog } from "./watchdog.ts";
import { allReduceSymmetric } from "./allreduce_symmetric.ts";
import { allocSymmetric, type SymmetricAllocation } from "../transports/shm/symmetric.ts";
import type { Store } from "../transports/store/store.ts";
import { allReduceShmChunks, allReduceShmSmall, fitsSmallSlot } from "./allreduce_shm.ts";
import { barrierShm } from "./barrier_shm.ts";
import { broadcastShm, broadcastShmSmall, useArenaBroadcast } from "./broadcast_shm.ts";
import { allGatherShm } from "./allgather_shm.ts";
import { reduceScatterShm } from "./reducescatter_shm.ts";
import { reduceShm } from "./reduce_shm.ts";
import { Arena, type Fingerprint, type WaitContext } from "./shm_arena.ts";

const KIND_NAMES = Object.fromEntries(Object.entries(OpKind).map(([k, v]) => [v, k]));
setHeaderNames(
  (op) =>
    `${KIND_NAMES[op & 0xff] ?? op & 0xff}${(op >> 8) === 255 ? "" : `/${REDUCE_OPS[op >> 8] ?? op >> 8}`}`,
  (d) => DTYPES[d] ?? String(d),
);

/** Options every operation accepts. */
export interface OpOptions {
  /** Element type; required for a `Uint16Array` (`"f16"` or `"bf16"`), checked otherwise. */
  dtype?: DType;
  /** Timeout of this call in milliseconds (default: the group's). */
  timeoutMs?: number;
}

/** Options of reducing collectives. */
export interface ReduceOptions extends OpOptions {
  /** The reduction (default {@link ReduceOp.SUM}). */
  op?: ReduceOp;
  /** The scalar of {@link ReduceOp.PREMUL_SUM}. */
  factor?: number;
}

/** Options of rooted collectives. */
export interface RootOptions extends OpOptions {
  /** The root rank (default 0). */
  root?: number;
}

/** Options of point-to-point calls. */
export interface P2POptions extends OpOptions {
  /** A tag both sides must agree on (default 0). */
  tag?: number;
}

/** Settings of a {@link ProcessGroup}. */
export interface ProcessGroupOptions {
  /** Default timeout of every operation, in milliseconds. */
  timeoutMs: number;
  /** Bytes per pipelined chunk (default 1 MiB). */
  chunkBytes?: number;
  /** Group id stamped on frames (0 for the world group). */
  group?: number;
  /** Host index of every rank (equal for ranks on one host); enables the hierarchical allreduce. */
  hostOf?: readonly number[];
  /** The job's store under this group's prefix (needed by {@link ProcessGroup.alloc}). */
  store?: Store;
  /** The job id, part of the names of `alloc`'s shared-memory segments. */
  jobId?: string;
  /** Called once by {@link ProcessGroup.destroy} after the transport is closed (e.g. to close the store). */
  onDestroy?: () => Promise<void>;
}

/**
 * A group of ranks that run collectives together, like torch.distributed's ProcessGroup. Create
 * one with `initProcessGroup()`. All calls are in place on the tensors passed in; collectives run
 * one at a time in the order they were called.
 */
export class ProcessGroup {
  /** This process's rank in the group. */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly size: number;
  readonly #transport: Transport;
  readonly #opts: ProcessGroupOptions;
  #comm: Comm | null = null;
  #hier: HierarchicalComms | null = null;
  #arena: Arena | null = null;
  readonly #arenaCtx: WaitContext = {
    op: "",
    deadline: 0,
    timeoutMs: 0,
    globalRank: 0,
    globalOf: [],
    describe: describeFingerprint,
  };
  readonly #arenaFp: Fingerprint = { kind: 0, op: 0, dtype: 0, count: 0, root: -1 };
  readonly #symmetric = new Map<ArrayBufferLike, SymmetricAllocation>();
  #symmetricClosed = 0;
  #seq = 0;
  #tail: Promise<unknown> = Promise.resolve();
  #inflight = 0;
  readonly #watchdog = new Watchdog();
  #broken: ChoirError | null = null;
  #destroyed = false;
  readonly #sendSeq: number[];
  readonly #recvSeq: number[];

  /** Wraps a connected transport. Most users call `initProcessGroup()` instead. */
  constructor(transport: Transport, opts: ProcessGroupOptions) {
    this.#transport = transport;
    this.#opts = opts;
    this.rank = transport.rank;
    this.size = transport.size;
    this.#sendSeq = new Array(this.size).fill(0);
    this.#recvSeq = new Array(this.size).fill(0);
  }

  /** The transport's name (`tcp`, ...). */
  get backend(): string {
    return this.#transport.name;
  }

  /** Opens the channel to every peer, so that the first collective does not pay for connecting. */
  async connect(): Promise<void> {
    const channels = await Promise.all(
      Array.from({ length: this.size }, (_, p) => p === this.rank ? null : this.#transport.channel(p)),
    );
    this.#comm = new Comm(
      this.rank,
      this.size,
      this.#opts.group ?? 0,
      channels,
      this.#opts.chunkBytes ?? 1 << 20,
    );
    if (this.#opts.hostOf) this.#hier = hierarchicalComms(this.#comm, this.#opts.hostOf);
    // The shared arena serves the collectives when every rank of the group is on this host.
    const host = this.#transport.arena?.();
    if (host && host.size === this.size) {
      this.#arena = new Arena(host, this.#opts.chunkBytes ?? 1 << 20);
      this.#arenaCtx.globalRank = this.rank;
      this.#arenaCtx.globalOf = Array.from({ length: this.size }, (_, r) => r);
    }
  }

  /** Reduces `tensor` across all ranks in place; every rank gets the result. */
  allReduce(tensor: CpuTensor, opts: ReduceOptions = {}): Promise<void> {
    return rejecting(() => {
      const { dtype, op } = this.#reduceArgs("allReduce", tensor, opts);
      const call = this.#call("allReduce", OpKind.allReduce, dtype, tensor.length, -1, op);
      if (this.#arena) {
        const arena = this.#arena;
        return this.#onArena(call, opts, (ctx, fp) => {
          if (op === ReduceOp.PREMUL_SUM) scaleInto(dtype, tensor, opts.factor ?? 1);
          let r: Promise<void> | undefined;
          if (fitsSmallSlot(tensor)) r = allReduceShmSmall(arena, call, fp, tensor, ctx);
          else {
            const sym = this.#symmetric.get(tensor.buffer);
            if (sym) r = allReduceSymmetric(arena, call, fp, sym, tensor, ctx);
            else r = allReduceShmChunks(arena, call, fp, tensor, ctx);
          }
          if (op !== ReduceOp.AVG) return r;
          if (!r) return void divideInto(dtype, tensor, this.size);
          return r.then(() => divideInto(dtype, tensor, this.size));
        });
      }
      return this.#collective(call, opts, async (comm) => {
        if (op === ReduceOp.PREMUL_SUM) scaleInto(dtype, tensor, opts.factor ?? 1);
        const algo = planAllReduce(tensor.byteLength, this.size, this.#hier !== null);
        if (algo === "hierarchical") await allReduceHierarchical(this.#hier!, call, tensor);
        else if (algo === "direct") await allReduceDirect(comm, call, tensor);
        else if (algo === "recursive_doubling") await allReduceRecursiveDoubling(comm, call, tensor);
        else await allReduceRing(comm, call, tensor);
        if (op === ReduceOp.AVG) divideInto(dtype, tensor, this.size);
      });
    });
  }

  /** Copies `tensor` from `root` to every rank. */
  broadcast(tensor: CpuTensor, opts: RootOptions = {}): Promise<void> {
    return rejecting(() => {
      const dtype = this.#dtype("broadcast", tensor, opts.dtype);
      const root = this.#root("broadcast", opts.root);
      const call = this.#call("broadcast", OpKind.broadcast, dtype, tensor.length, root);
      const arena = this.#arena;
      if (arena && fitsSmallSlot(tensor)) {
        return this.#onArena(call, opts, (ctx, fp) => broadcastShmSmall(arena, call, fp, tensor, ctx));
      }
      if (arena && useArenaBroadcast(arena, tensor.byteLength)) {
        return this.#onArena(call, opts, (ctx, fp) => broadcastShm(arena, call, fp, tensor, ctx));
      }
      return this.#collective(call, opts, (comm) => {
        return planBroadcast(tensor.byteLength, this.size) === "binomial"
          ? broadcastBinomial(comm, call, tensor)
          : broadcastChain(comm, call, tensor);
      });
    });
  }

  /** Reduces `tensor` from every rank into `tensor` on `root`; other ranks' tensors are unchanged. */
  reduce(tensor: CpuTensor, opts: ReduceOptions & RootOptions = {}): Promise<void> {
    return rejecting(() => {
      const { dtype, op } = this.#reduceArgs("reduce", tensor, opts);
      const root = this.#root("reduce", opts.root);
      const call = this.#call("reduce", OpKind.reduce, dtype, tensor.length, root, op);
      const arena = this.#arena;
      if (arena) {
        return this.#onArena(call, opts, async (ctx, fp) => {
          let input = tensor;
          if (op === ReduceOp.PREMUL_SUM) {
            if (this.rank !== root) input = copyOf(tensor);
            scaleInto(dtype, input, opts.factor ?? 1);
          }
          await reduceShm(arena, call, fp, input, ctx);
          if (op === ReduceOp.AVG && this.rank === root) divideInto(dtype, tensor, this.size);
        });
      }
      return this.#collective(call, opts, async (comm) => {
        let input = tensor;
        if (op === ReduceOp.PREMUL_SUM) {
          if (this.rank !== root) input = copyOf(tensor);
          scaleInto(dtype, input, opts.factor ?? 1);
        }
        if (planReduce(tensor.byteLength, this.size) === "binomial") await reduceBinomial(comm, call, input);
        else await reduceChain(comm, call, input);
        if (op === ReduceOp.AVG && this.rank === root) divideInto(dtype, tensor, this.size);
      });
    });
  }

  /**
   * Gathers every rank's `input` into `output` (rank r's block at `r * input.length`), like
   * torch's `all_gather_into_tensor`. `output.length` must be `size * input.length`.
   */
  allGather(output: CpuTensor, input: CpuTensor, opts: OpOptions = {}): Promise<void> {
    return rejecting(() => {
      const dtype = this.#dtype("allGather", input, opts.dtype);
      this.#sameType("allGather", output, input, dtype, this.size * input.length, "output");
      const call = this.#call("allGather", OpKind.allGather, dtype, input.length, -1);
      const arena = this.#arena;
      if (arena) return this.#onArena(call, opts, (ctx, fp) => allGatherShm(arena, fp, output, input, ctx));
      return this.#collective(call, opts, (comm) => {
        if (
          output.buffer !== input.buffer ||
          output.byteOffset + this.rank * input.byteLength !== input.byteOffset
        ) {
          bytesOf(sliceView(output, this.rank * input.length, input.length)).set(bytesOf(input));
        }
        return allGatherRing(comm, call, output);
      });
    });
  }

  /**
   * Reduces `input` (size blocks of `output.length`) across ranks and leaves block r of the result
   * in `output` on rank r, like torch's `reduce_scatter_tensor`. `input` is not modified.
   */
  reduceScatter(output: CpuTensor, input: CpuTensor, opts: ReduceOptions = {}): Promise<void> {
    return rejecting(() => {
      const { dtype, op } = this.#reduceArgs("reduceScatter", input, opts);
      this.#sameType("reduceScatter", input, output, dtype, this.size * output.length, "input");
      const call = this.#call("reduceScatter", OpKind.reduceScatter, dtype, input.length, -1, op);
      const arena = this.#arena;
      if (arena) {
        return this.#onArena(call, opts, async (ctx, fp) => {
          let work = input;
          if (op === ReduceOp.PREMUL_SUM) scaleInto(dtype, work = copyOf(input), opts.factor ?? 1);
          await reduceScatterShm(arena, call, fp, output, work, ctx);
          if (op === ReduceOp.AVG) divideInto(dtype, output, this.size);
        });
      }
      return this.#collective(call, opts, async (comm) => {
        const work = copyOf(input);
        if (op === ReduceOp.PREMUL_SUM) scaleInto(dtype, work, opts.factor ?? 1);
        await reduceScatterRing(comm, call, work);
        const mine = sliceView(work, this.rank * output.length, output.length);
        if (op === ReduceOp.AVG) divideInto(dtype, mine, this.size);
        bytesOf(output).set(bytesOf(mine));
      });
    });
  }

  /** Returns once every rank has called `barrier()`. */
  barrier(opts: { timeoutMs?: number } = {}): Promise<void> {
    return rejecting(() => {
      const call = this.#call("barrier", OpKind.barrier, "u8", 0, -1);
      const arena = this.#arena;
      if (arena) return this.#onArena(call, opts, (ctx, fp) => barrierShm(arena, fp, ctx));
      return this.#collective(call, opts, (comm) => barrierDissemination(comm, call));
    });
  }

  /** Sends `tensor` to rank `dst`; the matching `recv` must use the same size, dtype and tag. */
  send(tensor: CpuTensor, opts: P2POptions & { dst: number }): Promise<void> {
    return rejecting(() => {
      const dtype = this.#dtype("send", tensor, opts.dtype);
      const dst = this.#peer("send", opts.dst, "dst");
      const call = this.#call(
        "send",
        OpKind.p2p,
        dtype,
        tensor.length,
        opts.tag ?? 0,
        undefined,
        this.#sendSeq[dst]++,
      );
      return this.#p2p(call, opts, (comm) => comm.send(dst, call, 0, tensor));
    });
  }

  /** Receives into `tensor` from rank `src`; sizes, dtype and tag must match the `send`. */
  recv(tensor: CpuTensor, opts: P2POptions & { src: number }): Promise<void> {
    return rejecting(() => {
      const dtype = this.#dtype("recv", tensor, opts.dtype);
      const src = this.#peer("recv", opts.src, "src");
      const call = this.#call(
        "recv",
        OpKind.p2p,
        dtype,
        tensor.length,
        opts.tag ?? 0,
        undefined,
        this.#recvSeq[src]++,
      );
      return this.#p2p(call, opts, (comm) => comm.recv(src, call, 0, tensor));
    });
  }

  /**
   * Allocates a tensor of `length` elements of `dtype` in shared memory that every rank of this host
   * maps (symmetric memory). A collective call: every rank must call it, in the same order, with the
   * same arguments. Collectives on such tensors (at the same offset on every rank) need no copy in or
   * out: allReduce then reduces in place in one pass. Needs every rank on one host (shm transport).
   */
  async alloc(dtype: DType, length: number): Promise<CpuTensor> {
    const arena = this.#arena;
    const store = this.#opts.store;
    if (!arena || !store) {
      throw new InvalidArgumentError("alloc needs every rank of the group on one host, over shared memory", {
        rank: this.rank,
        op: "alloc",
      });
    }
    if (!Number.isInteger(length) || length < 0) {
      throw new InvalidArgumentError(`length must be a non-negative integer, got ${length}`, {
        rank: this.rank,
        op: "alloc",
      });
    }
    const ctor = ARRAY_TYPE[dtype];
    const sym = await allocSymmetric({
      rank: this.rank,
      size: this.size,
      store,
      index: this.#symmetric.size + this.#symmetricClosed,
      jobId: this.#opts.jobId,
      bytes: Math.max(64, length * ctor.BYTES_PER_ELEMENT),
    });
    this.#symmetric.set(sym.buffer, sym);
    return new ctor(sym.buffer, sym.offsets[this.rank], length);
  }

  /** Waits for running collectives, then closes every connection. Later calls throw. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await this.#tail.catch(() => {});
    this.#watchdog.close();
    for (const sym of this.#symmetric.values()) sym.close();
    this.#symmetricClosed += this.#symmetric.size;
    this.#symmetric.clear();
    await this.#transport.close();
    await this.#opts.onDestroy?.();
  }

  // ---- argument checks -------------------------------------------------------------------

  #dtype(op: string, t: CpuTensor, tag: DType | undefined): DType {
    try {
      if (!ArrayBuffer.isView(t)) throw new InvalidArgumentError(`expected a typed array, got ${typeof t}`);
      if (t.buffer.byteLength === 0 && t.length > 0) {
        throw new InvalidArgumentError("the tensor's buffer is detached");
      }
      return dtypeOf(t, tag);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message, { rank: this.rank, op });
    }
  }

  #reduceArgs(name: string, t: CpuTensor, opts: ReduceOptions): { dtype: DType; op: ReduceOp } {
    const dtype = this.#dtype(name, t, opts.dtype);
    const op = opts.op ?? ReduceOp.SUM;
    if (!REDUCE_OPS.includes(op)) {
      throw new InvalidArgumentError(`unknown reduce op ${String(op)}`, { rank: this.rank, op: name });
    }
    if (!opSupports(op, dtype)) {
      throw new InvalidArgumentError(`${op} is not defined for ${dtype}`, { rank: this.rank, op: name });
    }
    if (op === ReduceOp.PREMUL_SUM && (opts.factor === undefined || !isFloat(dtype))) {
      throw new InvalidArgumentError(`premul_sum needs { factor } and a float dtype`, {
        rank: this.rank,
        op: name,
      });
    }
    return { dtype, op };
  }

  #sameType(name: string, big: CpuTensor, small: CpuTensor, dtype: DType, want: number, which: string): void {
    if (big.constructor !== small.constructor) {
      throw new InvalidArgumentError(`output and input have different element types`, {
        rank: this.rank,
        op: name,
      });
    }
    if (big.length !== want) {
      throw new InvalidArgumentError(
        `${which} has ${big.length} ${dtype} elements, expected ${want} (${this.size} ranks x ${
          which === "output" ? small.length : big.length / this.size
        })`,
        { rank: this.rank, op: name },
      );
    }
  }

  #root(op: string, root: number | undefined): number {
    return this.#peer(op, root ?? 0, "root", true);
  }

  #peer(op: string, p: number, what: string, selfOk = false): number {
    if (!Number.isInteger(p) || p < 0 || p >= this.size || (!selfOk && p === this.rank)) {
      throw new InvalidArgumentError(
        `${what} ${p} is not a ${selfOk ? "" : "peer "}rank of this group (size ${this.size}${
          selfOk ? "" : `, this rank is ${this.rank}`
        })`,
        { rank: this.rank, op },
      );
    }
    return p;
  }

  #call(
    name: string,
    kind: number,
    dtype: DType,
    count: number,
    root: number,
    op?: ReduceOp,
    seq?: number,
  ): Call {
    if (this.#destroyed) {
      throw new GroupDestroyedError("the process group was destroyed", { rank: this.rank, op: name });
    }
    return { name, kind, dtype, count, root, op, seq: seq ?? this.#seq++ };
  }

  // ---- running -----------------------------------------------------------------------------

  /** Runs a collective after the previous one, with the group's timeout; a comm failure breaks the group. */
  #collective(call: Call, opts: OpOptions, body: (comm: Comm) => Promise<void>): Promise<void> {
    const run = () => this.#guard(call, opts, body);
    // Start at once when nothing is in flight: saves a promise hop on every small collective.
    const p = this.#inflight === 0 ? run() : this.#tail.then(run, run);
    this.#inflight++;
    const done = () => void this.#inflight--;
    this.#tail = p.then(done, done);
    return p;
  }

  /**
   * Runs a collective on the shared arena. Its waits spin first and only then nap (without blocking
   * the event loop), each with the call's own deadline, so no timer is armed per call and a tiny
   * same-host collective whose peers are on time runs through without leaving this call.
   */
  #onArena(
    call: Call,
    opts: OpOptions,
    body: (ctx: WaitContext, fp: Fingerprint) => Promise<void> | undefined,
  ): Promise<void> {
    const run = (): Promise<void> | undefined => {
      if (this.#broken) throw this.#broken;
      if (this.#destroyed) {
        throw new GroupDestroyedError("the process group was destroyed", { rank: this.rank, op: call.name });
      }
      // One context and fingerprint object per group, refilled per call: arena collectives run
      // one at a time (later ones queue behind a running one), and tiny ones feel every allocation.
      const ms = opts.timeoutMs ?? this.#opts.timeoutMs;
      const ctx = this.#arenaCtx;
      ctx.op = call.name;
      ctx.deadline = 0; // set by the first wait that naps
      ctx.timeoutMs = ms;
      const fp = this.#arenaFp;
      fp.kind = call.kind;
      fp.op = reduceOpCode(call.op);
      fp.dtype = dtypeCode(call.dtype);
      fp.count = call.count;
      fp.root = call.root;
      let r: Promise<void> | undefined;
      try {
        r = body(ctx, fp);
      } catch (e) {
        this.#arenaFailed(e, call.name);
      }
      return r === undefined ? undefined : r.catch((e) => this.#arenaFailed(e, call.name));
    };
    let p: Promise<void>;
    if (this.#inflight === 0) {
      // Nothing queued: run here; a collective whose peers were on time is already complete.
      let r: Promise<void> | undefined;
      try {
        r = run();
      } catch (e) {
        return Promise.reject(e);
      }
      if (!r) return RESOLVED;
      p = r;
    } else {
      p = this.#tail.then(run, run).then(() => {});
    }
    this.#inflight++;
    const done = () => void this.#inflight--;
    this.#tail = p.then(done, done);
    return p;
  }

  /** A failed arena collective breaks the group (the other ranks' counters are now out of step). */
  #arenaFailed(e: unknown, op: string): never {
    if (!(e instanceof InvalidArgumentError)) {
      this.#broken = e instanceof ChoirError ? e : new PeerLostError(String(e), { rank: this.rank, op });
      void this.#transport.close(this.#broken);
    }
    throw e;
  }

  /** Point-to-point calls run at once (not queued behind collectives), so send+recv pairs can overlap. */
  #p2p(call: Call, opts: OpOptions, body: (comm: Comm) => Promise<void>): Promise<void> {
    return this.#guard(call, opts, body);
  }

  async #guard(call: Call, opts: OpOptions, body: (comm: Comm) => Promise<void>): Promise<void> {
    if (this.#broken) throw this.#broken;
    if (this.#destroyed) {
      throw new GroupDestroyedError("the process group was destroyed", { rank: this.rank, op: call.name });
    }
    if (!this.#comm) await this.connect();
    const comm = this.#comm!;
    const ms = opts.timeoutMs ?? this.#opts.timeoutMs;
    try {
      await this.#watchdog.track(
        body(comm),
        ms,
        () =>
          new CollectiveTimeoutError(`${call.name} #${call.seq} did not complete`, ms, {
            rank: this.rank,
            op: call.name,
          }),
      );
    } catch (e) {
      const err = e instanceof ChoirError
        ? e
        : new PeerLostError(`${call.name} failed: ${(e as Error).message}`, {
          rank: this.rank,
          op: call.name,
          cause: e,
        });
      if (!(err instanceof InvalidArgumentError)) {
        // The byte streams are now in an unknown state: stop using them.
        this.#broken = err;
        await this.#transport.close(err);
      }
      throw err;
    }
  }
}

/** Runs `f`, turning a synchronous throw (a bad argument) into a rejected promise. */
function rejecting(f: () => Promise<void>): Promise<void> {
  try {
    return f();
  } catch (e) {
    return Promise.reject(e);
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

function describeFingerprint(fp: Fingerprint): Record<string, number | string> {
  return {
    op: `${KIND_NAMES[fp.kind] ?? fp.kind}${fp.op === 255 ? "" : `/${REDUCE_OPS[fp.op] ?? fp.op}`}`,
    dtype: DTYPES[fp.dtype] ?? fp.dtype,
    count: fp.count,
    root: fp.root,
  };
}

function copyOf<T extends CpuTensor>(t: T): T {
  const c = allocLike(t, t.length);
  bytesOf(c).set(bytesOf(t));
  return c;
}
