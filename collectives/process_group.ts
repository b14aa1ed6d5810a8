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
import { type HierarchicalComms, hierarchicalComms } from "./allreduce_hierarchical.ts";
import { barrierDissemination } from "./barrier_dissemination.ts";
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
import {
  type Algorithm,
  ALGORITHMS,
  type Explanation,
  FORCIBLE_OPS as FORCIBLE,
  isAlgorithm,
  isForcible,
  plan,
  planArena,
  type PlanOp,
} from "./plan.ts";
import { type Choice, runAllReduce, runBroadcast, runReduce, runReduceScatter } from "./dispatch.ts";
import { divideInto, scaleInto } from "./reduce/mod.ts";
import { Watchdog } from "./watchdog.ts";
import { allReduceSymmetric } from "./allreduce_symmetric.ts";
import { allocSymmetric, type SymmetricAllocation } from "../transports/shm/symmetric.ts";
import type { Store } from "../transports/store/store.ts";
import { allReduceShmChunks, allReduceShmSmall, fitsSmallSlot } from "./allreduce_shm.ts";
import { barrierShm } from "./barrier_shm.ts";
import { broadcastShm, useArenaBroadcast } from "./broadcast_shm.ts";
import { Arena, type Fingerprint, SMALL_PAYLOAD, type WaitContext } from "./shm_arena.ts";

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
  /**
   * Run this algorithm for this call (every rank must pass the same); it must be one of the op's
   * (`ALGORITHMS`), else InvalidArgumentError. On one host it runs over the channels, not the arena.
   */
  algorithm?: Algorithm;
}

/** Options of rooted collectives. */
export interface RootOptions extends OpOptions {
  /** The root rank (default 0). */
  root?: number;
  /** Run this algorithm for this call (see {@link ReduceOptions.algorithm}). */
  algorithm?: Algorithm;
}

/** Options of {@link ProcessGroup.explain}. */
export interface ExplainOptions {
  /** Explain the run with this algorithm forced (as the call option of the same name). */
  algorithm?: Algorithm;
  /** The tensor comes from `pg.alloc` (symmetric memory: same-host allreduce runs in place). */
  symmetric?: boolean;
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
  /** Called once by {@link ProcessGroup.destroy} after the transport is closed (e.g. to close the store). */
  onDestroy?: () => Promise<void>;
  /**
   * Force this algorithm (`CHOIR_ALGO`) on every allReduce, reduce, broadcast and reduceScatter whose
   * algorithms include the name (e.g. `tree` applies to the first three, `ring` to allReduce and
   * reduceScatter); the other ops keep their plan. Same-host groups then run it over the channels
   * instead of the shared arena. A name that is no such algorithm throws InvalidArgumentError here;
   * one that cannot run in this group (`direct` with more than 2 ranks) throws at the call.
   */
  algorithm?: Algorithm;
  /**
   * Deterministic reductions (`CHOIR_DETERMINISTIC=1`): allReduce, reduce and reduceScatter fold every
   * element in rank order, ((x0 op x1) op x2) ..., so results are bitwise identical on every rank,
   * from run to run and whatever the algorithm, chunk size or arrival order. With more than 2 ranks
   * they run the `ordered` algorithms (the ring's bytes, but every rank exchanges with every other;
   * no recursive doubling or tree for small messages); same-host allReduce keeps the arena, which
   * already folds in rank order.
   */
  deterministic?: boolean;
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
  readonly #plans = new Map<string, Choice>();

  /** Wraps a connected transport. Most users call `initProcessGroup()` instead. */
  constructor(transport: Transport, opts: ProcessGroupOptions) {
    const forced = opts.algorithm;
    if (forced !== undefined && !isForcible(forced)) {
      throw new InvalidArgumentError(
        `unknown algorithm "${forced}" (CHOIR_ALGO / algorithm); choose one of ${
          [...new Set(FORCIBLE.flatMap((op) => ALGORITHMS[op]))].join(", ")
        }`,
        { rank: transport.rank, op: "ProcessGroup" },
      );
    }
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
      const forced = this.#forced("allReduce", opts.algorithm);
      const choice = forced || !this.#arena ? this.#choose("allReduce", tensor.byteLength, forced) : null;
      const call = this.#call("allReduce", OpKind.allReduce, dtype, tensor.length, -1, op);
      if (!choice) {
        const arena = this.#arena!;
        return this.#onArena(call, opts, (ctx, fp) => {
          if (op === ReduceOp.PREMUL_SUM) scaleInto(dtype, tensor, opts.factor ?? 1);
          let r: Promise<void> | undefined;
          if (fitsSmallSlot(tensor)) r = allReduceShmSmall(arena, call, fp, tensor, ctx);
          else {
            const sym = this.#symmetric.get(tensor.buffer);
            if (sym) r = allReduceSymmetric(arena, call, fp, sym.buffers, tensor, ctx);
            else r = allReduceShmChunks(arena, call, fp, tensor, ctx);
          }
          if (op !== ReduceOp.AVG) return r;
          if (!r) return void divideInto(dtype, tensor, this.size);
          return r.then(() => divideInto(dtype, tensor, this.size));
        });
      }
      return this.#collective(call, opts, async (comm) => {
        if (op === ReduceOp.PREMUL_SUM) scaleInto(dtype, tensor, opts.factor ?? 1);
        await runAllReduce(choice, comm, this.#hier, call, tensor);
        if (op === ReduceOp.AVG) divideInto(dtype, tensor, this.size);
      });
    });
  }

  /** Copies `tensor` from `root` to every rank. */
  broadcast(tensor: CpuTensor, opts: RootOptions = {}): Promise<void> {
    return rejecting(() => {
      const dtype = this.#dtype("broadcast", tensor, opts.dtype);
      const root = this.#root("broadcast", opts.root);
      const forced = this.#forced("broadcast", opts.algorithm);
      const arena = forced ? null : this.#arena;
      const onArena = arena !== null && useArenaBroadcast(arena, tensor.byteLength);
      const choice = onArena ? null : this.#choose("broadcast", tensor.byteLength, forced);
      const call = this.#call("broadcast", OpKind.broadcast, dtype, tensor.length, root);
      if (!choice) return this.#onArena(call, opts, (ctx, fp) => broadcastShm(arena!, call, fp, tensor, ctx));
      return this.#collective(call, opts, (comm) => runBroadcast(choice, comm, call, tensor));
    });
  }

  /** Reduces `tensor` from every rank into `tensor` on `root`; other ranks' tensors are unchanged. */
  reduce(tensor: CpuTensor, opts: ReduceOptions & RootOptions = {}): Promise<void> {
    return rejecting(() => {
      const { dtype, op } = this.#reduceArgs("reduce", tensor, opts);
      const root = this.#root("reduce", opts.root);
      const choice = this.#choose("reduce", tensor.byteLength, this.#forced("reduce", opts.algorithm));
      const call = this.#call("reduce", OpKind.reduce, dtype, tensor.length, root, op);
      return this.#collective(call, opts, async (comm) => {
        let input = tensor;
        if (op === ReduceOp.PREMUL_SUM) {
          if (this.rank !== root) input = copyOf(tensor);
          scaleInto(dtype, input, opts.factor ?? 1);
        }
        await runReduce(choice, comm, call, input);
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
      const forced = this.#forced("reduceScatter", opts.algorithm);
      const choice = this.#choose("reduceScatter", input.byteLength, forced);
      const call = this.#call("reduceScatter", OpKind.reduceScatter, dtype, input.length, -1, op);
      return this.#collective(call, opts, async (comm) => {
        const premul = op === ReduceOp.PREMUL_SUM;
        const src = premul ? copyOf(input) : input;
        if (premul) scaleInto(dtype, src, opts.factor ?? 1);
        await runReduceScatter(choice, comm, call, output, src, premul);
        if (op === ReduceOp.AVG) divideInto(dtype, output, this.size);
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
   * What `op` on a tensor of `bytes` bytes (allGather: the output's; reduceScatter: the input's)
   * would run in this group, and why: the algorithm, its chunk size, its predicted time and every
   * candidate's. Pure: it sends nothing, and every rank gets the same answer; it throws what the call
   * would throw for a forced algorithm that cannot run. Same-host allReduce, barrier and large broadcasts name the shared-arena algorithm
   * (`shm_small`, `shm_chunks`, `shm_symmetric`) unless an algorithm is forced.
   *
   * @example
   * ```ts
   * import { initProcessGroup } from "@choir/choir";
   * const pg = await initProcessGroup();
   * const e = pg.explain("allReduce", 64 << 20);
   * console.log(e.algorithm, e.predictedUs, e.reason);
   * await pg.destroy();
   * ```
   */
  explain(op: PlanOp, bytes: number, opts: ExplainOptions = {}): Explanation {
    if (!(op in ALGORITHMS)) {
      throw new InvalidArgumentError(`cannot explain "${op}": one of ${Object.keys(ALGORITHMS).join(", ")}`, {
        rank: this.rank,
        op: "explain",
      });
    }
    if (!Number.isInteger(bytes) || bytes < 0) {
      throw new InvalidArgumentError(`bytes must be a non-negative integer, got ${bytes}`, {
        rank: this.rank,
        op: "explain",
      });
    }
    const forced = FORCIBLE.includes(op) ? this.#forced(op, opts.algorithm) : undefined;
    const input = this.#planInput(op, bytes, forced);
    const arena = this.#arena;
    if (arena && forced === undefined) {
      let algorithm: Algorithm | null = null;
      if (op === "barrier") algorithm = "shm_small";
      if (op === "broadcast" && useArenaBroadcast(arena, bytes)) algorithm = "shm_chunks";
      if (op === "allReduce") {
        algorithm = bytes <= SMALL_PAYLOAD ? "shm_small" : opts.symmetric ? "shm_symmetric" : "shm_chunks";
      }
      if (algorithm) return planArena(input, algorithm, arena.chunkBytes);
    }
    return plan(input);
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
      bytes: Math.max(64, length * ctor.BYTES_PER_ELEMENT),
    });
    this.#symmetric.set(sym.buffers[this.rank], sym);
    return new ctor(sym.buffers[this.rank], 0, length);
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

  /** The algorithm forced on `op`: the call's, else the group's where it names one of op's. */
  #forced(op: PlanOp, call: Algorithm | undefined): Algorithm | undefined {
    if (call !== undefined) {
      if (!isAlgorithm(call) || !ALGORITHMS[op].includes(call)) {
        throw new InvalidArgumentError(
          `${op} has no algorithm "${call}" (it has ${ALGORITHMS[op].join(", ")})`,
          { rank: this.rank, op },
        );
      }
      return call;
    }
    const group = this.#opts.algorithm;
    return group !== undefined && ALGORITHMS[op].includes(group) ? group : undefined;
  }

  #planInput(op: PlanOp, bytes: number, forced: Algorithm | undefined) {
    return {
      op,
      bytes,
      n: this.size,
      transport: this.#transport.name,
      hostOf: this.#opts.hostOf,
      chunkBytes: this.#opts.chunkBytes ?? 1 << 20,
      algorithm: forced,
      deterministic: this.#opts.deterministic ?? false,
    };
  }

  /** The plan's choice for `op` on `bytes` (the same on every rank: plan() is pure), memoised. */
  #choose(op: PlanOp, bytes: number, forced: Algorithm | undefined): Choice {
    const key = `${op}/${bytes}/${forced ?? ""}`;
    let c = this.#plans.get(key);
    if (!c) {
      let e: Explanation;
      try {
        e = plan(this.#planInput(op, bytes, forced));
      } catch (err) {
        if (err instanceof InvalidArgumentError) {
          throw new InvalidArgumentError(err.message.replace(/^\[[^\]]*\] /, ""), { rank: this.rank, op });
        }
        throw err;
      }
      c = { algorithm: e.algorithm, chunkBytes: e.chunkBytes };
      if (this.#plans.size >= 1024) this.#plans.clear();
      this.#plans.set(key, c);
    }
    return c;
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
      ctx.deadline = performance.now() + ms;
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
