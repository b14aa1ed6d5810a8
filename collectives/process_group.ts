/**
 * @module
 * The ProcessGroup: torch.distributed's collective API over a Transport, or straight on the shared
 * arena when every rank is on one host. It checks arguments, orders collectives, stamps each with a
 * sequence number, picks the algorithm, enforces timeouts, hands out Works for `{ async: true }` calls
 * and forms subgroups; the algorithms live one per file, and opening a subgroup's transport is left
 * to the opener `initProcessGroup()` installs.
 */

import {
  AbortedError,
  ChoirError,
  CollectiveMismatchError,
  CollectiveTimeoutError,
  GroupDestroyedError,
  InvalidArgumentError,
  PeerLostError,
} from "../errors.ts";
import type { Transport } from "../transports/transport.ts";
import { setHeaderNames } from "../transports/frame.ts";
import { allGatherRing } from "./channels/allgather_ring.ts";
import { type HierarchicalComms, hierarchicalComms } from "./channels/allreduce_hierarchical.ts";
import { barrierDissemination } from "./channels/barrier_dissemination.ts";
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
} from "../dtype.ts";
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
} from "./plan/plan.ts";
import { type Choice, runAllReduce, runBroadcast, runReduce, runReduceScatter } from "./channels/dispatch.ts";
import { contribution, finishReduction } from "./reduce_steps.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { isGpuTensorLike } from "../gpu_brand.ts";
import type { GpuOptions } from "./gpu/gpu_options.ts";
import { type GpuRouteModule, gpuRouteNow, waitGpuRoute } from "./gpu/gpu_lazy.ts";
import type { HostGroup } from "./gpu/gpu_route.ts";
import { Watchdog } from "./diagnostics/watchdog.ts";
import { allReduceSymmetric } from "./arena/allreduce_symmetric.ts";
import { allocSymmetric, type SymmetricAllocation } from "../transports/shm/symmetric.ts";
import type { Store } from "../transports/store/store.ts";
import { allReduceShmChunks, allReduceShmSmall, fitsSmallSlot } from "./arena/allreduce_shm.ts";
import { barrierShm } from "./arena/barrier_shm.ts";
import { broadcastShm, broadcastShmSmall, useArenaBroadcast } from "./arena/broadcast_shm.ts";
import { allGatherShm } from "./arena/allgather_shm.ts";
import { reduceScatterShm } from "./arena/reducescatter_shm.ts";
import { reduceShm } from "./arena/reduce_shm.ts";
import { Arena, type Fingerprint, SMALL_PAYLOAD, type WaitContext } from "./arena/shm_arena.ts";
import { OpMonitor } from "./diagnostics/op_monitor.ts";
import type { Metrics } from "./diagnostics/metrics.ts";
import { DEFAULT_FLIGHT_RECORDER_SIZE, type FlightRecorderSnapshot } from "./diagnostics/flight_recorder.ts";
import { Work } from "./work.ts";
import { broadcastBinomial } from "./channels/broadcast_binomial.ts";
import { gatherLinear } from "./channels/gather_linear.ts";
import { gatherBinomial } from "./channels/gather_binomial.ts";
import { scatterLinear } from "./channels/scatter_linear.ts";
import { scatterBinomial } from "./channels/scatter_binomial.ts";
import { allToAllPairwise, type Blocks } from "./channels/alltoall_pairwise.ts";
import { planGather } from "./plan/plan.ts";
import { packObject, unpackObject } from "./objects.ts";
import { groupDigest, groupTag, splitMembers, splitTag } from "./groups.ts";

const KIND_NAMES = Object.fromEntries(Object.entries(OpKind).map(([k, v]) => [v, k]));
setHeaderNames(
  (op) =>
    `${KIND_NAMES[op & 0xff] ?? op & 0xff}${(op >> 8) === 255 ? "" : `/${REDUCE_OPS[op >> 8] ?? op >> 8}`}`,
  (d) => DTYPES[d] ?? String(d),
);

/**
 * Internal, never public: the options key under which the GPU route's host collectives (see
 * {@link HostGroup}) carry what they start after (a staged chunk on the host, an IPC descriptor): such a
 * collective takes its place in the group's order when called and starts once that promise resolves.
 * The symbol is private to this module, so no caller's options can hold it.
 */
const AFTER = Symbol("after");

/** Options that may carry an {@link AFTER} dependency. */
interface Ordered {
  [AFTER]?: Promise<void>;
}

/** Options every operation accepts. */
export interface OpOptions {
  /** Element type; required for a `Uint16Array` (`"f16"` or `"bf16"`), checked otherwise. */
  dtype?: DType;
  /** Timeout of this call in milliseconds (default: the group's). */
  timeoutMs?: number;
  /** Return a {@link Work} at once instead of a promise (default false); see {@link AsyncOptions}. */
  async?: boolean;
  /** How GpuTensors move (IPC or staged, chunk size); ignored for CPU tensors. */
  gpu?: GpuOptions;
}

/**
 * `{ async: true }`: the call returns a {@link Work} at once instead of a promise. Collectives of a
 * group still run one at a time in the order they were called, so several may be in flight.
 */
export interface AsyncOptions {
  /** Return a {@link Work}. */
  async: true;
}

/** The default: the call returns a promise. */
export interface SyncOptions {
  /** Return a promise (the default). */
  async?: false;
}

/** Options of {@link ProcessGroup.barrier}. */
export type BarrierOptions = Omit<OpOptions, "dtype">;

/** Options of the object collectives (`broadcastObject`, `allGatherObject`, ...). */
export type ObjectOptions = Omit<OpOptions, "dtype">;

/** Options of the rooted object collectives. */
export interface RootObjectOptions extends ObjectOptions {
  /** The root rank (default 0). */
  root?: number;
}

/** Options of {@link ProcessGroup.allToAll}. */
export interface AllToAllOptions extends OpOptions {
  /**
   * Elements this rank sends to each rank, in rank order (sum: `input.length`; zeros allowed).
   * Default: `input.length / size` each.
   */
  inputSplits?: readonly number[];
  /**
   * Elements this rank receives from each rank, in rank order (sum: `output.length`). Default:
   * `output.length / size` each. Rank p's `inputSplits[q]` must equal rank q's `outputSplits[p]`.
   */
  outputSplits?: readonly number[];
}

/**
 * One point-to-point operation of {@link ProcessGroup.batchIsendIrecv}, like torch's `P2POp`.
 */
export interface P2POp {
  /** Send `tensor` to `peer`, or receive into it from `peer`. */
  op: "isend" | "irecv";
  /** The data to send, or the buffer to receive into (exactly the size the peer sends). */
  tensor: CpuTensor;
  /** The other rank. */
  peer: number;
  /** A tag both sides must agree on (default 0). */
  tag?: number;
  /** Element type; required for a `Uint16Array`. */
  dtype?: DType;
}

/** Options of {@link ProcessGroup.newGroup} and {@link ProcessGroup.split}. */
export interface NewGroupOptions {
  /** Default timeout of the new group's operations and of forming it, in ms (default: this group's). */
  timeoutMs?: number;
}

/** What a {@link SubgroupOpener} is asked to open. */
export interface SubgroupSpec {
  /** Unique name of the group in the job (its store prefix and the source of its id). */
  tag: string;
  /** Global rank of each member, in the new group's rank order. */
  ranks: readonly number[];
  /** This process's rank in the new group. */
  rank: number;
  /** Default timeout of the new group, in ms. */
  timeoutMs: number;
}

/**
 * Opens a subgroup's own transport (new connections, a new shm segment) under the job's store, and
 * returns it connected. `initProcessGroup()` installs one; a group built without it cannot split.
 */
export type SubgroupOpener = (spec: SubgroupSpec) => Promise<ProcessGroup>;

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

/** A group's state for `/status`: who it is and what it runs. */
export interface GroupStatus {
  /** This rank in the group. */
  rank: number;
  /** Ranks in the group. */
  size: number;
  /** Group id. */
  group: number;
  /** Transport name. */
  backend: string;
  /** Operations running now (flight recorder entries). */
  inFlight: unknown[];
  /** The flight recorder, or null when it is off. */
  flightRecorder: FlightRecorderSnapshot | null;
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
  /** Flight recorder entries (default 256, `CHOIR_FLIGHT_RECORDER`; 0 turns it off). */
  flightRecorder?: number;
  /** Called once by {@link ProcessGroup.destroy} after the transport is closed (e.g. to close the store). */
  onDestroy?: () => Promise<void>;
  /** Global rank of each rank of this group (default: the group is the world, rank i is rank i). */
  globalRanks?: readonly number[];
  /** This group's unique name in the job (default `pg0`, the world); subgroup names derive from it. */
  tag?: string;
  /** Opens subgroups for {@link ProcessGroup.newGroup} and {@link ProcessGroup.split}. */
  subgroups?: SubgroupOpener;
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
 * one with `initProcessGroup()`, smaller ones with {@link ProcessGroup.newGroup} and
 * {@link ProcessGroup.split}. Tensor calls are in place on the tensors passed in; collectives run
 * one at a time in the order they were called. Every operation returns a promise, or with
 * `{ async: true }` a {@link Work}. Tensors are typed arrays or GpuTensors (`gpu/`): a GPU allReduce runs
 * through CUDA IPC between ranks of one host, everything else is staged through pinned host memory
 * (`gpu_route.ts`).
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
  /** What the GPU route gets of this group, made on first GPU use. */
  #host: HostGroup | null = null;
  /** Calls held behind a GPU call that waits for the GPU route to load (see `#hold`). */
  #held = 0;
  /** Resolves once the last held call has started. */
  #started: Promise<void> = Promise.resolve();
  /** A held call is starting: the calls it makes start at once, in its place. */
  #starting = false;
  readonly #watchdog = new Watchdog();
  #broken: ChoirError | null = null;
  #destroyed = false;
  readonly #sendSeq: number[];
  readonly #recvSeq: number[];
  readonly #globalOf: readonly number[];
  readonly #tag: string;
  #groupCount = 0;
  readonly #children = new Set<ProcessGroup>();
  readonly #pairs = new Map<number, Promise<{ comm: Comm; peer: number }>>();
  readonly #opening = new Set<Promise<void>>();
  readonly #monitor: OpMonitor;
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
    this.#globalOf = opts.globalRanks ?? Array.from({ length: this.size }, (_, r) => r);
    if (this.#globalOf.length !== this.size) {
      throw new InvalidArgumentError(
        `globalRanks has ${this.#globalOf.length} entries for ${this.size} ranks`,
        {
          rank: this.rank,
          op: "ProcessGroup",
        },
      );
    }
    this.#tag = opts.tag ?? "pg0";
    this.#monitor = new OpMonitor({
      rank: this.rank,
      size: this.size,
      group: opts.group ?? 0,
      capacity: opts.flightRecorder ?? DEFAULT_FLIGHT_RECORDER_SIZE,
      store: opts.store,
    });
  }

  /** The counters and latency histograms of this group's operations (Prometheus text via `.text()`). */
  get metrics(): Metrics {
    return this.#monitor.metrics;
  }

  /** What this group is doing and did lately: in-flight ops and the flight recorder (for /status). */
  status(): GroupStatus {
    return {
      rank: this.rank,
      size: this.size,
      group: this.#opts.group ?? 0,
      backend: this.backend,
      inFlight: this.#monitor.inFlight(),
      flightRecorder: this.#monitor.snapshot(),
    };
  }

  /** The global rank of each rank of this group, in group-rank order. */
  get ranks(): readonly number[] {
    return this.#globalOf;
  }

  /** The global rank of `groupRank` (torch's `get_global_rank`). */
  globalRank(groupRank: number): number {
    return this.#globalOf[this.#peer("globalRank", groupRank, "group rank", true)];
  }

  /** The rank in this group of global rank `globalRank` (torch's `get_group_rank`); throws if it is not a member. */
  groupRank(globalRank: number): number {
    const r = this.#globalOf.indexOf(globalRank);
    if (r < 0) {
      throw new InvalidArgumentError(
        `global rank ${globalRank} is not a member of this group (${this.#globalOf})`,
        {
          rank: this.rank,
          op: "groupRank",
        },
      );
    }
    return r;
  }

  /** Whether every rank of the group runs on this host (enables the GPU IPC allreduce). */
  get sameHost(): boolean {
    if (this.#arena) return true;
    const h = this.#opts.hostOf;
    return h !== undefined && h.length === this.size && h.every((x) => x === h[0]);
  }

  /**
   * Whether {@link alloc} works here: every rank of the group on this host, over shared memory. The
   * same on every rank, so ranks can agree to use symmetric memory without a round of messages.
   */
  get canAlloc(): boolean {
    return this.#arena !== null && this.#opts.store !== undefined;
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
  allReduce(tensor: CpuTensor | GpuTensor, opts: ReduceOptions & AsyncOptions): Work;
  /** Reduces `tensor` across all ranks in place; every rank gets the result. */
  allReduce(tensor: CpuTensor | GpuTensor, opts?: ReduceOptions & SyncOptions): Promise<void>;
  allReduce(tensor: CpuTensor | GpuTensor, opts: ReduceOptions = {}): Promise<void> | Work {
    if (isGpu(tensor)) return this.#onGpu("allReduce", opts, (r, g) => r.gpuAllReduce(g, tensor, opts));
    return this.#issue("allReduce", opts, () => {
      const { dtype, op } = this.#reduceArgs("allReduce", tensor, opts);
      const forced = this.#forced("allReduce", opts.algorithm);
      const choice = forced || !this.#arena ? this.#choose("allReduce", tensor.byteLength, forced) : null;
      const call = this.#call("allReduce", OpKind.allReduce, dtype, tensor.length, -1, op);
      if (!choice) {
        const arena = this.#arena!;
        return this.#onArena(call, opts, (ctx, fp) => {
          contribution(op, dtype, opts.factor, tensor);
          let r: Promise<void> | undefined;
          if (fitsSmallSlot(tensor)) r = allReduceShmSmall(arena, call, fp, tensor, ctx);
          else {
            const sym = this.#symmetric.get(tensor.buffer);
            if (sym) r = allReduceSymmetric(arena, call, fp, sym, tensor, ctx);
            else r = allReduceShmChunks(arena, call, fp, tensor, ctx);
          }
          if (op !== ReduceOp.AVG) return r; // a synchronous fast path stays synchronous
          const finish = () => finishReduction(op, dtype, tensor, this.size);
          if (r) return r.then(finish);
          finish();
        });
      }
      return this.#collective(call, opts, async (comm) => {
        await runAllReduce(choice, comm, this.#hier, call, contribution(op, dtype, opts.factor, tensor));
        finishReduction(op, dtype, tensor, this.size);
      });
    });
  }

  /** Copies `tensor` from `root` to every rank. */
  broadcast(tensor: CpuTensor | GpuTensor, opts: RootOptions & AsyncOptions): Work;
  /** Copies `tensor` from `root` to every rank. */
  broadcast(tensor: CpuTensor | GpuTensor, opts?: RootOptions & SyncOptions): Promise<void>;
  broadcast(tensor: CpuTensor | GpuTensor, opts: RootOptions = {}): Promise<void> | Work {
    if (isGpu(tensor)) return this.#onGpu("broadcast", opts, (r, g) => r.gpuBroadcast(g, tensor, opts));
    return this.#issue("broadcast", opts, () => {
      const dtype = this.#dtype("broadcast", tensor, opts.dtype);
      const root = this.#root("broadcast", opts.root);
      const forced = this.#forced("broadcast", opts.algorithm);
      const arena = forced ? null : this.#arena;
      const onArena = arena !== null &&
        (fitsSmallSlot(tensor) || useArenaBroadcast(arena, tensor.byteLength));
      const choice = onArena ? null : this.#choose("broadcast", tensor.byteLength, forced);
      const call = this.#call("broadcast", OpKind.broadcast, dtype, tensor.length, root);
      if (!choice) {
        if (fitsSmallSlot(tensor)) {
          return this.#onArena(call, opts, (ctx, fp) => broadcastShmSmall(arena!, call, fp, tensor, ctx));
        }
        return this.#onArena(call, opts, (ctx, fp) => broadcastShm(arena!, call, fp, tensor, ctx));
      }
      return this.#collective(call, opts, (comm) => runBroadcast(choice, comm, call, tensor));
    });
  }

  /** Reduces `tensor` from every rank into `tensor` on `root`; other ranks' tensors are unchanged. */
  reduce(tensor: CpuTensor | GpuTensor, opts: ReduceOptions & RootOptions & AsyncOptions): Work;
  /** Reduces `tensor` from every rank into `tensor` on `root`; other ranks' tensors are unchanged. */
  reduce(tensor: CpuTensor | GpuTensor, opts?: ReduceOptions & RootOptions & SyncOptions): Promise<void>;
  reduce(tensor: CpuTensor | GpuTensor, opts: ReduceOptions & RootOptions = {}): Promise<void> | Work {
    if (isGpu(tensor)) return this.#onGpu("reduce", opts, (r, g) => r.gpuReduce(g, tensor, opts));
    return this.#issue("reduce", opts, () => {
      const { dtype, op } = this.#reduceArgs("reduce", tensor, opts);
      const root = this.#root("reduce", opts.root);
      const forced = this.#forced("reduce", opts.algorithm);
      const arena = forced ? null : this.#arena;
      const call = this.#call("reduce", OpKind.reduce, dtype, tensor.length, root, op);
      // Other ranks' tensors are unchanged: they contribute a scaled copy for PREMUL_SUM.
      const input = () =>
        contribution(op, dtype, opts.factor, tensor, this.rank === root ? undefined : () => copyOf(tensor));
      if (arena) {
        return this.#onArena(call, opts, async (ctx, fp) => {
          await reduceShm(arena, call, fp, input(), ctx);
          if (this.rank === root) finishReduction(op, dtype, tensor, this.size);
        });
      }
      return this.#collective(call, opts, async (comm) => {
        await runReduce(this.#choose("reduce", tensor.byteLength, forced), comm, call, input());
        if (this.rank === root) finishReduction(op, dtype, tensor, this.size);
      });
    });
  }

  /**
   * Gathers every rank's `input` into `output` (rank r's block at `r * input.length`), like
   * torch's `all_gather_into_tensor`. `output.length` must be `size * input.length`.
   */
  allGather(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor,
    opts: OpOptions & AsyncOptions,
  ): Work;
  /**
   * Gathers every rank's `input` into `output` (rank r's block at `r * input.length`), like
   * torch's `all_gather_into_tensor`. `output.length` must be `size * input.length`.
   */
  allGather(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor,
    opts?: OpOptions & SyncOptions,
  ): Promise<void>;
  allGather(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor,
    opts: OpOptions = {},
  ): Promise<void> | Work {
    if (isGpu(output) || isGpu(input)) {
      return this.#onGpu(
        "allGather",
        opts,
        (r, g) => r.gpuAllGather(g, gpu("allGather", output), input, opts),
      );
    }
    return this.#issue("allGather", opts, () => {
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
  reduceScatter(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor,
    opts: ReduceOptions & AsyncOptions,
  ): Work;
  /**
   * Reduces `input` (size blocks of `output.length`) across ranks and leaves block r of the result
   * in `output` on rank r, like torch's `reduce_scatter_tensor`. `input` is not modified.
   */
  reduceScatter(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor,
    opts?: ReduceOptions & SyncOptions,
  ): Promise<void>;
  reduceScatter(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor,
    opts: ReduceOptions = {},
  ): Promise<void> | Work {
    if (isGpu(output) || isGpu(input)) {
      return this.#onGpu(
        "reduceScatter",
        opts,
        (r, g) => r.gpuReduceScatter(g, gpu("reduceScatter", output), input, opts),
      );
    }
    return this.#issue("reduceScatter", opts, () => {
      const { dtype, op } = this.#reduceArgs("reduceScatter", input, opts);
      this.#sameType("reduceScatter", input, output, dtype, this.size * output.length, "input");
      return this.#reduceScatter("reduceScatter", output, input, () => copyOf(input), dtype, op, opts);
    });
  }

  /**
   * Reduces `inputs[p]` across ranks into `output` on rank p, like torch's `reduce_scatter` with a
   * list: `inputs` holds `size` tensors of `output.length` elements each. `inputs` are not modified.
   * Runs the same collective as {@link reduceScatter}, so ranks may mix the two forms.
   */
  reduceScatterList(
    output: CpuTensor,
    inputs: readonly CpuTensor[],
    opts: ReduceOptions & AsyncOptions,
  ): Work;
  /**
   * Reduces `inputs[p]` across ranks into `output` on rank p, like torch's `reduce_scatter` with a
   * list: `inputs` holds `size` tensors of `output.length` elements each. `inputs` are not modified.
   * Runs the same collective as {@link reduceScatter}, so ranks may mix the two forms.
   */
  reduceScatterList(
    output: CpuTensor,
    inputs: readonly CpuTensor[],
    opts?: ReduceOptions & SyncOptions,
  ): Promise<void>;
  reduceScatterList(
    output: CpuTensor,
    inputs: readonly CpuTensor[],
    opts: ReduceOptions = {},
  ): Promise<void> | Work {
    return this.#issue("reduceScatterList", opts, () => {
      const name = "reduceScatterList";
      const { dtype, op } = this.#reduceArgs(name, output, opts);
      this.#list(name, inputs, output, dtype, "inputs");
      const len = output.length;
      return this.#reduceScatter(
        name,
        output,
        null,
        () => {
          const work = allocLike(output, this.size * len);
          inputs.forEach((t, p) => bytesOf(sliceView(work, p * len, len)).set(bytesOf(t)));
          return work;
        },
        dtype,
        op,
        opts,
      );
    });
  }

  /**
   * The reduce-scatter both forms share: `whole` is the input when it is one tensor already, `fill`
   * makes a working copy of the whole input.
   */
  #reduceScatter(
    name: string,
    output: CpuTensor,
    whole: CpuTensor | null,
    fill: () => CpuTensor,
    dtype: DType,
    op: ReduceOp,
    opts: ReduceOptions,
  ): Promise<void> {
    const call = this.#call(name, OpKind.reduceScatter, dtype, this.size * output.length, -1, op);
    const forced = this.#forced("reduceScatter", opts.algorithm);
    const arena = forced ? null : this.#arena;
    if (arena) {
      // On the arena the input is only read: a copy is needed only to scale it or to join a list.
      return this.#onArena(call, opts, async (ctx, fp) => {
        // Read in place unless the output overlaps it (an in-place reduce-scatter writes its block
        // while the other ranks still read it).
        const work = whole !== null && !overlaps(output, whole) ? whole : fill();
        const mine = contribution(op, dtype, opts.factor, work, work === whole ? fill : undefined);
        await reduceScatterShm(arena, call, fp, output, mine, ctx);
        finishReduction(op, dtype, output, this.size);
      });
    }
    const choice = this.#choose("reduceScatter", this.size * output.byteLength, forced);
    return this.#collective(call, opts, async (comm) => {
      // A private copy when the input must be scaled, is a list, or overlaps the output.
      const own = whole === null || op === ReduceOp.PREMUL_SUM || overlaps(output, whole);
      const src = contribution(op, dtype, opts.factor, own ? fill() : whole);
      await runReduceScatter(choice, comm, call, output, src, own);
      finishReduction(op, dtype, output, this.size);
    });
  }

  /** Returns once every rank has called `barrier()`. */
  barrier(opts: BarrierOptions & AsyncOptions): Work;
  /** Returns once every rank has called `barrier()`. */
  barrier(opts?: BarrierOptions & SyncOptions): Promise<void>;
  barrier(opts: BarrierOptions = {}): Promise<void> | Work {
    return this.#issue("barrier", opts, () => {
      const call = this.#call("barrier", OpKind.barrier, "u8", 0, -1);
      const arena = this.#arena;
      if (arena) return this.#onArena(call, opts, (ctx, fp) => barrierShm(arena, fp, ctx));
      return this.#collective(call, opts, (comm) => barrierDissemination(comm, call));
    });
  }

  /**
   * Sends `tensor` to rank `dst`; the matching `recv` must use the same size, dtype and tag.
   * Messages between two ranks are matched in the order they were issued.
   */
  send(tensor: CpuTensor | GpuTensor, opts: P2POptions & { dst: number } & AsyncOptions): Work;
  /**
   * Sends `tensor` to rank `dst`; the matching `recv` must use the same size, dtype and tag.
   * Messages between two ranks are matched in the order they were issued.
   */
  send(tensor: CpuTensor | GpuTensor, opts: P2POptions & { dst: number } & SyncOptions): Promise<void>;
  send(tensor: CpuTensor | GpuTensor, opts: P2POptions & { dst: number }): Promise<void> | Work {
    if (isGpu(tensor)) return this.#onGpu("send", opts, (r, g) => r.gpuSend(g, tensor, opts));
    return this.#issue("send", opts, () => {
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
      return this.#p2p(call, opts, dst, (comm, peer) => comm.send(peer, call, 0, tensor));
    });
  }

  /** Receives into `tensor` from rank `src`; sizes, dtype and tag must match the `send`. */
  recv(tensor: CpuTensor | GpuTensor, opts: P2POptions & { src: number } & AsyncOptions): Work;
  /** Receives into `tensor` from rank `src`; sizes, dtype and tag must match the `send`. */
  recv(tensor: CpuTensor | GpuTensor, opts: P2POptions & { src: number } & SyncOptions): Promise<void>;
  recv(tensor: CpuTensor | GpuTensor, opts: P2POptions & { src: number }): Promise<void> | Work {
    if (isGpu(tensor)) return this.#onGpu("recv", opts, (r, g) => r.gpuRecv(g, tensor, opts));
    return this.#issue("recv", opts, () => {
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
      return this.#p2p(call, opts, src, (comm, peer) => comm.recv(peer, call, 0, tensor));
    });
  }

  // ---- gather, scatter, list forms, all-to-all ---------------------------------------------

  /**
   * Gathers every rank's `input` into `output` on `root` (rank r's block at `r * input.length`),
   * torch's `gather` into one tensor. On the root `output` must have `size * input.length` elements;
   * elsewhere it is ignored (pass null).
   */
  gather(
    output: CpuTensor | GpuTensor | null,
    input: CpuTensor | GpuTensor,
    opts: RootOptions & AsyncOptions,
  ): Work;
  /**
   * Gathers every rank's `input` into `output` on `root` (rank r's block at `r * input.length`),
   * torch's `gather` into one tensor. On the root `output` must have `size * input.length` elements;
   * elsewhere it is ignored (pass null).
   */
  gather(
    output: CpuTensor | GpuTensor | null,
    input: CpuTensor | GpuTensor,
    opts?: RootOptions & SyncOptions,
  ): Promise<void>;
  gather(
    output: CpuTensor | GpuTensor | null,
    input: CpuTensor | GpuTensor,
    opts: RootOptions = {},
  ): Promise<void> | Work {
    if (isGpu(output) || isGpu(input)) {
      return this.#onGpu("gather", opts, (r, g) => r.gpuGather(g, output, gpu("gather", input), opts));
    }
    return this.#issue("gather", opts, () => {
      const name = "gather";
      const dtype = this.#dtype(name, input, opts.dtype);
      const root = this.#root(name, opts.root);
      let blocks: CpuTensor[] | null = null;
      if (this.rank === root) {
        if (!output) throw this.#invalid(name, "the root needs an output tensor");
        this.#sameType(name, output, input, dtype, this.size * input.length, "output");
        blocks = this.#blocksOf(output, input.length);
      }
      return this.#gather(name, dtype, root, input, blocks, opts);
    });
  }

  /**
   * Gathers every rank's `input` into `outputs[r]` on `root`, like torch's `gather` with a
   * `gather_list`: on the root `outputs` holds `size` tensors of `input.length` elements; elsewhere
   * it is ignored (pass null). Runs the same collective as {@link gather}, so ranks may mix the forms.
   */
  gatherList(outputs: readonly CpuTensor[] | null, input: CpuTensor, opts: RootOptions & AsyncOptions): Work;
  /**
   * Gathers every rank's `input` into `outputs[r]` on `root`, like torch's `gather` with a
   * `gather_list`: on the root `outputs` holds `size` tensors of `input.length` elements; elsewhere
   * it is ignored (pass null). Runs the same collective as {@link gather}, so ranks may mix the forms.
   */
  gatherList(
    outputs: readonly CpuTensor[] | null,
    input: CpuTensor,
    opts?: RootOptions & SyncOptions,
  ): Promise<void>;
  gatherList(
    outputs: readonly CpuTensor[] | null,
    input: CpuTensor,
    opts: RootOptions = {},
  ): Promise<void> | Work {
    return this.#issue("gatherList", opts, () => {
      const name = "gatherList";
      const dtype = this.#dtype(name, input, opts.dtype);
      const root = this.#root(name, opts.root);
      if (this.rank === root) this.#list(name, outputs, input, dtype, "outputs");
      return this.#gather(name, dtype, root, input, this.rank === root ? outputs : null, opts);
    });
  }

  #gather(
    name: string,
    dtype: DType,
    root: number,
    input: CpuTensor,
    blocks: readonly CpuTensor[] | null,
    opts: OpOptions,
  ): Promise<void> {
    const call = this.#call(name, OpKind.gather, dtype, input.length, root);
    return this.#collective(
      call,
      opts,
      (comm) =>
        planGather(input.byteLength, this.size) === "binomial"
          ? gatherBinomial(comm, call, input, blocks)
          : gatherLinear(comm, call, input, blocks),
    );
  }

  /**
   * Gives every rank r block r of the root's `input` (`size` blocks of `output.length`), torch's
   * `scatter` from one tensor. `input` is ignored except on the root (pass null).
   */
  scatter(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor | null,
    opts: RootOptions & AsyncOptions,
  ): Work;
  /**
   * Gives every rank r block r of the root's `input` (`size` blocks of `output.length`), torch's
   * `scatter` from one tensor. `input` is ignored except on the root (pass null).
   */
  scatter(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor | null,
    opts?: RootOptions & SyncOptions,
  ): Promise<void>;
  scatter(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor | null,
    opts: RootOptions = {},
  ): Promise<void> | Work {
    if (isGpu(output) || isGpu(input)) {
      return this.#onGpu("scatter", opts, (r, g) => r.gpuScatter(g, gpu("scatter", output), input, opts));
    }
    return this.#issue("scatter", opts, () => {
      const name = "scatter";
      const dtype = this.#dtype(name, output, opts.dtype);
      const root = this.#root(name, opts.root);
      let blocks: CpuTensor[] | null = null;
      if (this.rank === root) {
        if (!input) throw this.#invalid(name, "the root needs an input tensor");
        this.#sameType(name, input, output, dtype, this.size * output.length, "input");
        blocks = this.#blocksOf(input, output.length);
      }
      return this.#scatter(name, dtype, root, output, blocks, opts);
    });
  }

  /**
   * Gives every rank r the root's `inputs[r]`, like torch's `scatter` with a `scatter_list`: on the
   * root `inputs` holds `size` tensors of `output.length` elements; elsewhere it is ignored (pass
   * null). Runs the same collective as {@link scatter}, so ranks may mix the forms.
   */
  scatterList(output: CpuTensor, inputs: readonly CpuTensor[] | null, opts: RootOptions & AsyncOptions): Work;
  /**
   * Gives every rank r the root's `inputs[r]`, like torch's `scatter` with a `scatter_list`: on the
   * root `inputs` holds `size` tensors of `output.length` elements; elsewhere it is ignored (pass
   * null). Runs the same collective as {@link scatter}, so ranks may mix the forms.
   */
  scatterList(
    output: CpuTensor,
    inputs: readonly CpuTensor[] | null,
    opts?: RootOptions & SyncOptions,
  ): Promise<void>;
  scatterList(
    output: CpuTensor,
    inputs: readonly CpuTensor[] | null,
    opts: RootOptions = {},
  ): Promise<void> | Work {
    return this.#issue("scatterList", opts, () => {
      const name = "scatterList";
      const dtype = this.#dtype(name, output, opts.dtype);
      const root = this.#root(name, opts.root);
      if (this.rank === root) this.#list(name, inputs, output, dtype, "inputs");
      return this.#scatter(name, dtype, root, output, this.rank === root ? inputs : null, opts);
    });
  }

  #scatter(
    name: string,
    dtype: DType,
    root: number,
    output: CpuTensor,
    blocks: readonly CpuTensor[] | null,
    opts: OpOptions,
  ): Promise<void> {
    const call = this.#call(name, OpKind.scatter, dtype, output.length, root);
    return this.#collective(
      call,
      opts,
      (comm) =>
        planGather(output.byteLength, this.size) === "binomial"
          ? scatterBinomial(comm, call, output, blocks)
          : scatterLinear(comm, call, output, blocks),
    );
  }

  /**
   * Gathers every rank's `input` into `outputs[r]` on every rank, torch's `all_gather` into a list:
   * `outputs` holds `size` tensors of `input.length` elements. Runs the same collective as
   * {@link allGather} (through one staging buffer), so ranks may mix the forms.
   */
  allGatherList(outputs: readonly CpuTensor[], input: CpuTensor, opts: OpOptions & AsyncOptions): Work;
  /**
   * Gathers every rank's `input` into `outputs[r]` on every rank, torch's `all_gather` into a list:
   * `outputs` holds `size` tensors of `input.length` elements. Runs the same collective as
   * {@link allGather} (through one staging buffer), so ranks may mix the forms.
   */
  allGatherList(
    outputs: readonly CpuTensor[],
    input: CpuTensor,
    opts?: OpOptions & SyncOptions,
  ): Promise<void>;
  allGatherList(outputs: readonly CpuTensor[], input: CpuTensor, opts: OpOptions = {}): Promise<void> | Work {
    return this.#issue("allGatherList", opts, () => {
      const name = "allGatherList";
      const dtype = this.#dtype(name, input, opts.dtype);
      this.#list(name, outputs, input, dtype, "outputs");
      const len = input.length;
      const call = this.#call(name, OpKind.allGather, dtype, len, -1);
      const arena = this.#arena;
      if (arena) {
        // The same collective as allGather, so it must take the same path.
        return this.#onArena(call, opts, async (ctx, fp) => {
          const all = allocLike(input, this.size * len);
          await allGatherShm(arena, fp, all, input, ctx);
          outputs.forEach((t, p) => bytesOf(t).set(bytesOf(sliceView(all, p * len, len))));
        });
      }
      return this.#collective(call, opts, async (comm) => {
        const all = allocLike(input, this.size * len);
        bytesOf(sliceView(all, this.rank * len, len)).set(bytesOf(input));
        await allGatherRing(comm, call, all);
        outputs.forEach((t, p) => bytesOf(t).set(bytesOf(sliceView(all, p * len, len))));
      });
    });
  }

  /**
   * Sends block p of `input` to rank p and receives rank p's block for this rank into block p of
   * `output`, torch's `all_to_all_single`. Without splits every block is `length / size` elements;
   * with `inputSplits`/`outputSplits` blocks have those sizes (zeros allowed). `output` and `input`
   * must not overlap. Runs as a pairwise exchange: n-1 steps, each with one peer each way.
   */
  allToAll(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor,
    opts: AllToAllOptions & AsyncOptions,
  ): Work;
  /**
   * Sends block p of `input` to rank p and receives rank p's block for this rank into block p of
   * `output`, torch's `all_to_all_single`. Without splits every block is `length / size` elements;
   * with `inputSplits`/`outputSplits` blocks have those sizes (zeros allowed). `output` and `input`
   * must not overlap. Runs as a pairwise exchange: n-1 steps, each with one peer each way.
   */
  allToAll(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor,
    opts?: AllToAllOptions & SyncOptions,
  ): Promise<void>;
  allToAll(
    output: CpuTensor | GpuTensor,
    input: CpuTensor | GpuTensor,
    opts: AllToAllOptions = {},
  ): Promise<void> | Work {
    if (isGpu(output) || isGpu(input)) {
      return this.#onGpu("allToAll", opts, (r, g) => r.gpuAllToAll(g, gpu("allToAll", output), input, opts));
    }
    return this.#issue("allToAll", opts, () => {
      const name = "allToAll";
      const dtype = this.#dtype(name, input, opts.dtype);
      if (output.constructor !== input.constructor) {
        throw this.#invalid(name, "output and input have different element types");
      }
      const send = this.#splits(name, input.length, opts.inputSplits, "inputSplits", "input");
      const recv = this.#splits(name, output.length, opts.outputSplits, "outputSplits", "output");
      const r = this.rank;
      if (send.lengths[r] !== recv.lengths[r]) {
        throw this.#invalid(
          name,
          `this rank sends itself ${send.lengths[r]} elements but expects ${recv.lengths[r]} from itself`,
        );
      }
      if (overlaps(output, input)) throw this.#invalid(name, "output and input overlap");
      // Block sizes differ from pair to pair: each frame's byte count is what gets checked.
      const call = this.#call(name, OpKind.allToAll, dtype, -1, -1);
      return this.#collective(call, opts, (comm) => allToAllPairwise(comm, call, output, recv, input, send));
    });
  }

  // ---- point to point, started at once ------------------------------------------------------

  /** Starts sending `tensor` to `dst` and returns its {@link Work}, like torch's `isend`. */
  isend(tensor: CpuTensor, opts: P2POptions & { dst: number }): Work {
    return this.send(tensor, { ...opts, async: true });
  }

  /** Starts receiving into `tensor` from `src` and returns its {@link Work}, like torch's `irecv`. */
  irecv(tensor: CpuTensor, opts: P2POptions & { src: number }): Work {
    return this.recv(tensor, { ...opts, async: true });
  }

  /**
   * Starts every send and receive of `ops` at once and returns their Works in the same order, like
   * torch's `batch_isend_irecv`. All ops are checked before any starts: a bad one throws
   * `InvalidArgumentError` naming its index, and nothing is sent. Between two ranks, sends and
   * receives are matched in list order.
   */
  batchIsendIrecv(ops: readonly P2POp[]): Work[] {
    const name = "batchIsendIrecv";
    if (!Array.isArray(ops) || ops.length === 0) {
      throw this.#invalid(name, "expects a non-empty list of P2POp");
    }
    ops.forEach((o, i) => {
      const where = `${name} ops[${i}]`;
      if (o.op !== "isend" && o.op !== "irecv") {
        throw this.#invalid(where, `op must be "isend" or "irecv", got ${String(o.op)}`);
      }
      this.#dtype(where, o.tensor, o.dtype);
      this.#peer(where, o.peer, o.op === "isend" ? "dst" : "src");
    });
    return ops.map((o) =>
      o.op === "isend"
        ? this.isend(o.tensor, { dst: o.peer, tag: o.tag, dtype: o.dtype })
        : this.irecv(o.tensor, { src: o.peer, tag: o.tag, dtype: o.dtype })
    );
  }

  // ---- object collectives -------------------------------------------------------------------
  // Values travel as msgpackr bytes: first their sizes (a small collective), then the bytes. Each is
  // one collective in the group's order, and every value returned is a decoded copy.

  /**
   * Sends `obj` from `root` to every rank and returns it there, like torch's
   * `broadcast_object_list`; `obj` is ignored on other ranks (pass null). Every rank, the root
   * included, gets a decoded copy. Values are msgpackr-encoded with `moreTypes` (typed arrays, Maps,
   * Sets, Dates and BigInts keep their types).
   */
  broadcastObject<T>(obj: T | null | undefined, opts: RootObjectOptions & AsyncOptions): Work<T>;
  /**
   * Sends `obj` from `root` to every rank and returns it there, like torch's
   * `broadcast_object_list`; `obj` is ignored on other ranks (pass null). Every rank, the root
   * included, gets a decoded copy. Values are msgpackr-encoded with `moreTypes` (typed arrays, Maps,
   * Sets, Dates and BigInts keep their types).
   */
  broadcastObject<T>(obj: T | null | undefined, opts?: RootObjectOptions & SyncOptions): Promise<T>;
  broadcastObject<T>(obj: T | null | undefined, opts: RootObjectOptions = {}): Promise<T> | Work<T> {
    return this.#issue("broadcastObject", opts, () => {
      const name = "broadcastObject";
      const root = this.#root(name, opts.root);
      const packed = this.rank === root ? packObject(obj, this.rank, name) : null;
      const call = this.#call(name, OpKind.broadcastObject, "u8", -1, root);
      let data = packed ?? new Uint8Array(0);
      return this.#collective(call, opts, async (comm) => {
        const len = new Float64Array([data.length]);
        await broadcastBinomial(comm, { ...call, dtype: "f64", count: 1 }, len);
        if (!packed) data = new Uint8Array(len[0]);
        const bytes = { ...call, count: len[0] };
        await runBroadcast(this.#choose("broadcast", data.length, undefined), comm, bytes, data);
      }).then(() => unpackObject<T>(data, this.rank, name, root));
    });
  }

  /**
   * Returns every rank's `obj`, in rank order, on every rank, like torch's `all_gather_object`
   * (which fills a list instead). Entries are decoded copies, this rank's own included.
   */
  allGatherObject<T>(obj: T, opts: ObjectOptions & AsyncOptions): Work<T[]>;
  /**
   * Returns every rank's `obj`, in rank order, on every rank, like torch's `all_gather_object`
   * (which fills a list instead). Entries are decoded copies, this rank's own included.
   */
  allGatherObject<T>(obj: T, opts?: ObjectOptions & SyncOptions): Promise<T[]>;
  allGatherObject<T>(obj: T, opts: ObjectOptions = {}): Promise<T[]> | Work<T[]> {
    return this.#issue("allGatherObject", opts, () => {
      const name = "allGatherObject";
      const packed = packObject(obj, this.rank, name);
      const call = this.#call(name, OpKind.allGatherObject, "u8", -1, -1);
      const lens = new Float64Array(this.size);
      let all = new Uint8Array(0);
      let width = 0;
      return this.#collective(call, opts, async (comm) => {
        lens[this.rank] = packed.length;
        await allGatherRing(comm, { ...call, dtype: "f64", count: 1 }, lens);
        // Equal blocks of the longest encoding: the ring allgather needs equal blocks.
        width = lens.reduce((a, b) => Math.max(a, b), 0);
        all = new Uint8Array(this.size * width);
        all.set(packed, this.rank * width);
        await allGatherRing(comm, { ...call, count: width }, all);
      }).then(() =>
        Array.from(
          lens,
          (l, p) => unpackObject<T>(all.subarray(p * width, p * width + l), this.rank, name, p),
        )
      );
    });
  }

  /**
   * Returns every rank's `obj`, in rank order, on `root` (null elsewhere), like torch's
   * `gather_object`. Entries are decoded copies.
   */
  gatherObject<T>(obj: T, opts: RootObjectOptions & AsyncOptions): Work<T[] | null>;
  /**
   * Returns every rank's `obj`, in rank order, on `root` (null elsewhere), like torch's
   * `gather_object`. Entries are decoded copies.
   */
  gatherObject<T>(obj: T, opts?: RootObjectOptions & SyncOptions): Promise<T[] | null>;
  gatherObject<T>(obj: T, opts: RootObjectOptions = {}): Promise<T[] | null> | Work<T[] | null> {
    return this.#issue("gatherObject", opts, () => {
      const name = "gatherObject";
      const root = this.#root(name, opts.root);
      const packed = packObject(obj, this.rank, name);
      const call = this.#call(name, OpKind.gatherObject, "u8", -1, root);
      const isRoot = this.rank === root;
      const lens = new Float64Array(isRoot ? this.size : 0);
      let blocks: Uint8Array[] | null = null;
      return this.#collective(call, opts, async (comm) => {
        const lenCall: Call = { ...call, dtype: "f64", count: 1 };
        const lenBlocks = isRoot ? this.#blocksOf(lens, 1) : null;
        const mine = new Float64Array([packed.length]);
        if (planGather(8, this.size) === "binomial") await gatherBinomial(comm, lenCall, mine, lenBlocks);
        else await gatherLinear(comm, lenCall, mine, lenBlocks);
        blocks = isRoot ? Array.from(lens, (l) => new Uint8Array(l)) : null;
        await gatherLinear(comm, call, packed, blocks);
      }).then(() => blocks?.map((b, p) => unpackObject<T>(b, this.rank, name, p)) ?? null);
    });
  }

  /**
   * Gives every rank r the root's `objs[r]` and returns it, like torch's `scatter_object_list`;
   * `objs` must hold `size` values on the root and is ignored elsewhere (pass null). Every rank,
   * the root included, gets a decoded copy.
   */
  scatterObject<T>(objs: readonly T[] | null, opts: RootObjectOptions & AsyncOptions): Work<T>;
  /**
   * Gives every rank r the root's `objs[r]` and returns it, like torch's `scatter_object_list`;
   * `objs` must hold `size` values on the root and is ignored elsewhere (pass null). Every rank,
   * the root included, gets a decoded copy.
   */
  scatterObject<T>(objs: readonly T[] | null, opts?: RootObjectOptions & SyncOptions): Promise<T>;
  scatterObject<T>(objs: readonly T[] | null, opts: RootObjectOptions = {}): Promise<T> | Work<T> {
    return this.#issue("scatterObject", opts, () => {
      const name = "scatterObject";
      const root = this.#root(name, opts.root);
      let packed: Uint8Array[] | null = null;
      if (this.rank === root) {
        if (!Array.isArray(objs) || objs.length !== this.size) {
          throw this.#invalid(
            name,
            `the root needs a list of ${this.size} objects (one per rank), got ${
              Array.isArray(objs) ? `${objs.length}` : String(objs)
            }`,
          );
        }
        packed = objs.map((o) => packObject(o, this.rank, name));
      }
      const call = this.#call(name, OpKind.scatterObject, "u8", -1, root);
      const len = new Float64Array(1);
      let mine = new Uint8Array(0);
      return this.#collective(call, opts, async (comm) => {
        const lenCall: Call = { ...call, dtype: "f64", count: 1 };
        const lens = packed ? Float64Array.from(packed, (b) => b.length) : null;
        const lenBlocks = lens ? this.#blocksOf(lens, 1) : null;
        if (planGather(8, this.size) === "binomial") await scatterBinomial(comm, lenCall, len, lenBlocks);
        else await scatterLinear(comm, lenCall, len, lenBlocks);
        mine = new Uint8Array(len[0]);
        await scatterLinear(comm, call, mine, packed);
      }).then(() => unpackObject<T>(mine, this.rank, name, root));
    });
  }

  // ---- subgroups ----------------------------------------------------------------------------

  /**
   * Forms a group of `ranks` (ranks of this group) with its own connections, like torch's
   * `new_group`: every rank of this group calls it, with the same list, in the same order as its
   * other newGroup/split calls. Members get the new group, numbered in ascending order of `ranks`;
   * the others get null. The new group runs its collectives independently of this one, even at the
   * same time. Throws `InvalidArgumentError` on every rank when the ranks passed different lists.
   */
  async newGroup(ranks: readonly number[], opts: NewGroupOptions = {}): Promise<ProcessGroup | null> {
    const name = "newGroup";
    const opener = this.#opener(name);
    if (!Array.isArray(ranks) || ranks.length === 0) {
      throw this.#invalid(name, "expects a non-empty list of ranks");
    }
    for (const p of ranks) this.#peer(name, p, "rank", true);
    const members = [...new Set(ranks)].sort((a, b) => a - b);
    if (members.length !== ranks.length) throw this.#invalid(name, `ranks [${ranks}] lists a rank twice`);
    const index = this.#groupCount++;
    const digests = await this.#exchange(name, OpKind.newGroup, new Float64Array([groupDigest(members)]));
    const differ = Array.from(digests.keys()).filter((p) => digests[p] !== digests[this.rank]);
    if (differ.length > 0) {
      throw this.#invalid(
        name,
        `ranks ${differ.join(", ")} passed other members than this rank's [${members}]`,
      );
    }
    if (!members.includes(this.rank)) return null;
    return await this.#openSub(opener, groupTag(this.#tag, index), members, opts);
  }

  /**
   * Splits this group by `color`, like `MPI_Comm_split`: every rank calls it; ranks passing the same
   * color form one new group, numbered by `key` (ties by rank in this group), each with its own
   * connections. A rank passing `null` joins none and gets null.
   */
  async split(color: number | null, key = 0, opts: NewGroupOptions = {}): Promise<ProcessGroup | null> {
    const name = "split";
    const opener = this.#opener(name);
    if (color !== null && (!Number.isInteger(color) || color < 0 || color > 0x7fffffff)) {
      throw this.#invalid(name, `color must be a non-negative 32-bit integer or null, got ${color}`);
    }
    if (!Number.isSafeInteger(key)) throw this.#invalid(name, `key must be an integer, got ${key}`);
    const index = this.#groupCount++;
    const pairs = await this.#exchange(name, OpKind.split, new Float64Array([color ?? -1, key]));
    if (color === null) return null;
    return await this.#openSub(opener, splitTag(this.#tag, index, color), splitMembers(pairs, color), opts);
  }

  /** Every rank's `mine`, in rank order: the agreement round of newGroup and split. */
  #exchange(name: string, kind: number, mine: Float64Array): Promise<Float64Array> {
    const all = new Float64Array(this.size * mine.length);
    all.set(mine, this.rank * mine.length);
    const run = () => {
      const call = this.#call(name, kind, "f64", mine.length, -1);
      return this.#collective(call, {}, (comm) => allGatherRing(comm, call, all)).then(() => all);
    };
    return this.#held === 0 || this.#starting ? run() : this.#hold(run);
  }

  #opener(name: string): SubgroupOpener {
    const opener = this.#opts.subgroups;
    if (!opener) {
      throw this.#invalid(name, "this group was built without a subgroup opener (use initProcessGroup)");
    }
    return opener;
  }

  async #openSub(
    opener: SubgroupOpener,
    tag: string,
    members: readonly number[],
    opts: NewGroupOptions,
  ): Promise<ProcessGroup> {
    return await this.#adopt(opener({
      tag,
      ranks: members.map((m) => this.#globalOf[m]),
      rank: members.indexOf(this.rank),
      timeoutMs: opts.timeoutMs ?? this.#opts.timeoutMs,
    }));
  }

  /**
   * Makes a group being opened a child of this one, so that destroy() waits for it and then destroys
   * it; one that opens after this group was destroyed is destroyed at once.
   */
  async #adopt(opening: Promise<ProcessGroup>): Promise<ProcessGroup> {
    const settled = opening.then(() => {}, () => {});
    this.#opening.add(settled);
    try {
      const sub = await opening;
      if (this.#destroyed) {
        await sub.destroy();
        throw new GroupDestroyedError("the process group was destroyed", { rank: this.rank, op: "newGroup" });
      }
      this.#children.add(sub);
      return sub;
    } finally {
      this.#opening.delete(settled);
    }
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
      if (op === "broadcast") {
        if (bytes <= SMALL_PAYLOAD) algorithm = "shm_small";
        else if (useArenaBroadcast(arena, bytes)) algorithm = "shm_chunks";
      }
      // reduce, allGather and reduceScatter always run on the arena (tiny ones in the call slots).
      if (op === "reduce" || op === "reduceScatter" || op === "allGather") {
        algorithm = bytes <= SMALL_PAYLOAD ? "shm_small" : "shm_chunks";
      }
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
    const index = this.#symmetric.size + this.#symmetricClosed;
    const bytes = Math.max(64, length * ctor.BYTES_PER_ELEMENT);
    // Worker ranks share one memory from their hub; processes map shm segments.
    const sym = this.#transport.symmetric
      ? await this.#transport.symmetric(index, bytes)
      : await allocSymmetric({
        rank: this.rank,
        size: this.size,
        store,
        index,
        jobId: this.#opts.jobId,
        bytes,
      });
    this.#symmetric.set(sym.buffer, sym);
    return new ctor(sym.buffer, sym.offsets[this.rank], length);
  }

  /**
   * Gives up at once, like torch's `abort()`: every operation in flight rejects with AbortedError
   * (within a nap of the shared arena, a few milliseconds), links are closed, later calls throw. The
   * other ranks see this rank's links close (PeerLostError) or time out in the arena. Then call
   * `destroy()` to release the rest.
   */
  async abort(reason = "the group was aborted"): Promise<void> {
    const err = new AbortedError(reason, { rank: this.rank, op: "abort" });
    this.#broken ??= err;
    this.#arenaCtx.aborted = err;
    await Promise.all([...this.#children].map((g) => g.abort(reason).catch(() => {})));
    await this.#transport.close(err);
  }

  /**
   * Destroys the groups made from this one, waits for running collectives, then closes every
   * connection. Later calls throw.
   */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await Promise.all(this.#opening);
    await Promise.all([...this.#children].map((g) => g.destroy().catch(() => {})));
    await this.#tail.catch(() => {});
    this.#watchdog.close();
    this.#monitor.close();
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

  #invalid(op: string, message: string): InvalidArgumentError {
    return new InvalidArgumentError(message, { rank: this.rank, op });
  }

  /** Checks a per-rank list: `size` tensors of `like`'s type and length. */
  #list(
    name: string,
    list: readonly CpuTensor[] | null | undefined,
    like: CpuTensor,
    dtype: DType,
    which: string,
  ): asserts list is readonly CpuTensor[] {
    if (!Array.isArray(list) || list.length !== this.size) {
      throw this.#invalid(
        name,
        `${which} must hold ${this.size} tensors (one per rank), got ${
          Array.isArray(list) ? list.length : String(list)
        }`,
      );
    }
    list.forEach((t: CpuTensor, p: number) => {
      if (!ArrayBuffer.isView(t) || t.constructor !== like.constructor) {
        throw this.#invalid(name, `${which}[${p}] is not a ${like.constructor.name}`);
      }
      if (t.length !== like.length) {
        throw this.#invalid(
          name,
          `${which}[${p}] has ${t.length} ${dtype} elements, expected ${like.length}`,
        );
      }
    });
  }

  /** `t` cut into `size` views of `len` elements. */
  #blocksOf<T extends CpuTensor>(t: T, len: number): T[] {
    return Array.from({ length: this.size }, (_, p) => sliceView(t, p * len, len));
  }

  /** Where each rank's block of a tensor of `total` elements lies, from `splits` or equal shares. */
  #splits(
    name: string,
    total: number,
    splits: readonly number[] | undefined,
    what: string,
    tensor: string,
  ): Blocks {
    const n = this.size;
    let lengths: number[];
    if (splits === undefined) {
      if (total % n !== 0) {
        throw this.#invalid(
          name,
          `${tensor} has ${total} elements, not a multiple of ${n} ranks; pass ${what}`,
        );
      }
      lengths = new Array(n).fill(total / n);
    } else {
      if (!Array.isArray(splits) || splits.length !== n) {
        throw this.#invalid(name, `${what} must hold ${n} sizes (one per rank), got ${splits}`);
      }
      const bad = splits.findIndex((x) => !Number.isInteger(x) || x < 0);
      if (bad >= 0) throw this.#invalid(name, `${what}[${bad}] is ${splits[bad]}, not a size`);
      const sum = splits.reduce((a, b) => a + b, 0);
      if (sum !== total) {
        throw this.#invalid(name, `${what} adds up to ${sum} elements but ${tensor} has ${total}`);
      }
      lengths = [...splits];
    }
    const starts = new Array<number>(n);
    for (let p = 0, at = 0; p < n; at += lengths[p++]) starts[p] = at;
    return { starts, lengths };
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
        `${which} has ${big.length} ${dtype} elements, expected ${want} (${this.size} ranks x ${small.length})`,
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

  /** Starts an operation; with `{ async: true }` hands back its {@link Work} instead of the promise. */
  #issue<T>(name: string, opts: { async?: boolean }, start: () => Promise<T>): Promise<T> | Work<T> {
    const p = this.#held === 0 || this.#starting ? rejecting(start) : this.#hold(start);
    return opts.async === true ? new Work(p, name, this.rank) : p;
  }

  /**
   * A collective on GpuTensors: `run` takes the GPU route and this group's {@link HostGroup}. The route
   * loads on first GPU use (`gpu_lazy.ts`); until it has, the call is held (see {@link #hold}), and so
   * is every call made on this group after it, so all start, take their sequence numbers and queue in
   * the order they were called, as they do once the route is loaded.
   */
  #onGpu(
    name: string,
    opts: { async?: boolean },
    run: (route: GpuRouteModule, g: HostGroup) => Promise<void>,
  ): Promise<void> | Work {
    const route = gpuRouteNow();
    if (route && (this.#held === 0 || this.#starting)) {
      return this.#issue(name, opts, () => run(route, this.#hostGroup()));
    }
    const wait = waitGpuRoute();
    let loaded: GpuRouteModule | null = null;
    const ready = wait.route.then((r) => void (loaded = r), (e) => {
      wait.done();
      throw e;
    });
    const p = this.#hold(() => {
      wait.done();
      return run(loaded!, this.#hostGroup());
    }, ready);
    return opts.async === true ? new Work(p, name, this.rank) : p;
  }

  /**
   * Starts `start` once the calls held before it have started and `ready` has resolved: a call made
   * while an earlier GPU call waits for the route. While `start` runs, calls it makes (the GPU route's
   * host collectives) start at once, in its place.
   */
  #hold<T>(start: () => Promise<T>, ready?: Promise<void>): Promise<T> {
    this.#held++;
    const prev = this.#started;
    let started!: () => void;
    this.#started = new Promise<void>((resolve) => started = resolve);
    const go = () => {
      this.#held--;
      this.#starting = true;
      try {
        return rejecting(start);
      } finally {
        this.#starting = false;
        started();
      }
    };
    return (ready ? prev.then(() => ready) : prev).then(go, (e) => {
      this.#held--;
      started();
      throw e;
    });
  }

  /** What the GPU route needs of this group: rank, size, and host collectives that honour `after`. */
  #hostGroup(): HostGroup {
    if (this.#host) return this.#host;
    // deno-lint-ignore no-this-alias
    const pg = this;
    const ordered = <T extends object>(opts: T, after: Promise<void>): T & Ordered => ({
      ...opts,
      [AFTER]: after,
    });
    return this.#host = {
      rank: this.rank,
      size: this.size,
      get sameHost() {
        return pg.sameHost;
      },
      get sameProcess() {
        return pg.backend === "worker"; // Worker ranks: threads of this process
      },
      allReduce: (t, o, after) => this.allReduce(t, ordered(o, after)),
      broadcast: (t, o, after) => this.broadcast(t, ordered(o, after)),
      reduce: (t, o, after) => this.reduce(t, ordered(o, after)),
      allGather: (out, inp, o, after) => this.allGather(out, inp, ordered(o, after)),
      reduceScatter: (out, inp, o, after) => this.reduceScatter(out, inp, ordered(o, after)),
      allToAll: (out, inp, o, after) => this.allToAll(out, inp, ordered(o, after)),
      gather: (out, inp, o, after) => this.gather(out, inp, ordered(o, after)),
      scatter: (out, inp, o, after) => this.scatter(out, inp, ordered(o, after)),
      send: (t, o) => this.send(t, o),
      recv: (t, o) => this.recv(t, o),
    };
  }

  /** Runs a collective after the previous one, with the group's timeout; a comm failure breaks the group. */
  #collective(call: Call, opts: OpOptions, body: (comm: Comm) => Promise<void>): Promise<void> {
    const arena = this.#arena;
    // On one host every collective first shows its fingerprint on the arena, as the arena ones do:
    // a rank running one over the channels while a peer runs another on the arena is then a
    // mismatch at the first step, not a wait until the timeout.
    const checked = arena
      ? async (comm: Comm) => {
        await arena.handshake(this.#fingerprint(call), this.#waitContext(call, opts));
        return body(comm);
      }
      : body;
    const run = () => this.#guard(call, opts, checked);
    const gate = (opts as Ordered)[AFTER];
    // Start at once when nothing is in flight: saves a promise hop on every small collective.
    const p = gate
      ? (this.#inflight === 0 ? gate : this.#tail.then(() => gate)).then(run)
      : this.#inflight === 0
      ? run()
      : this.#tail.then(run, run);
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
      const ctx = this.#waitContext(call, opts);
      const fp = this.#fingerprint(call);
      const h = this.#monitor.begin(call, true);
      let r: Promise<void> | undefined;
      try {
        r = body(ctx, fp);
      } catch (e) {
        this.#monitor.end(h, call, e);
        this.#arenaFailed(e, call.name);
      }
      if (r === undefined) {
        this.#monitor.end(h, call);
        return undefined;
      }
      return r.then(() => this.#monitor.end(h, call), async (e) => {
        // The hang report wants this op still running in the recorder: end it afterwards.
        if (e instanceof ChoirError && !(e instanceof InvalidArgumentError)) {
          e = await this.#monitor.failed(call, e);
        }
        this.#monitor.end(h, call, e);
        this.#arenaFailed(e, call.name);
      });
    };
    let p: Promise<void>;
    const gate = (opts as Ordered)[AFTER];
    if (gate) {
      // Keeps its place in the order, but starts once the gate opens (a staged GPU chunk is on the host).
      p = (this.#inflight === 0 ? gate : this.#tail.then(() => gate)).then(run).then(() => {});
    } else if (this.#inflight === 0) {
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

  // One context and fingerprint object per group, refilled per call: collectives run one at a time
  // (later ones queue behind a running one), and tiny ones feel every allocation.

  /** The group's arena wait context, filled for `call`. */
  #waitContext(call: Call, opts: OpOptions): WaitContext {
    const ctx = this.#arenaCtx;
    ctx.op = call.name;
    ctx.deadline = 0; // set by the first wait that naps
    ctx.timeoutMs = opts.timeoutMs ?? this.#opts.timeoutMs;
    return ctx;
  }

  /** The group's arena fingerprint, filled for `call`. */
  #fingerprint(call: Call): Fingerprint {
    const fp = this.#arenaFp;
    fp.kind = call.kind;
    fp.op = reduceOpCode(call.op);
    fp.dtype = dtypeCode(call.dtype);
    fp.count = call.count;
    fp.root = call.root;
    return fp;
  }

  /** A failed arena collective breaks the group (the other ranks' counters are now out of step). */
  #arenaFailed(e: unknown, op: string): never {
    if (!(e instanceof InvalidArgumentError)) {
      this.#broken = e instanceof ChoirError ? e : new PeerLostError(String(e), { rank: this.rank, op });
      void this.#transport.close(this.#broken);
    }
    throw e;
  }

  /**
   * Point-to-point calls run at once (not queued behind collectives), so send+recv pairs can overlap.
   * Each pair of ranks talks over a two-rank group of its own, opened on first use (as torch's NCCL
   * backend does): a receive left waiting must never take a collective's frame on a shared link.
   */
  #p2p(
    call: Call,
    opts: OpOptions,
    peer: number,
    body: (comm: Comm, peer: number) => Promise<void>,
  ): Promise<void> {
    return this.#guard(call, opts, async (comm) => {
      const pair = await this.#pairOf(peer);
      return pair ? body(pair.comm, pair.peer) : body(comm, peer);
    });
  }

  /** The two-rank link to `peer`, or null for a group that cannot open subgroups (then the group's own). */
  #pairOf(peer: number): Promise<{ comm: Comm; peer: number } | null> {
    const opener = this.#opts.subgroups;
    if (!opener) return Promise.resolve(null);
    let pair = this.#pairs.get(peer);
    if (!pair) {
      const [a, b] = this.rank < peer ? [this.rank, peer] : [peer, this.rank];
      pair = this.#adopt(opener({
        tag: `${this.#tag}.p${a}-${b}`,
        ranks: [this.#globalOf[a], this.#globalOf[b]],
        rank: this.rank === a ? 0 : 1,
        timeoutMs: this.#opts.timeoutMs,
      })).then((g) => ({ comm: g.#comm!, peer: this.rank === a ? 1 : 0 }));
      this.#pairs.set(peer, pair);
    }
    return pair;
  }

  async #guard(call: Call, opts: OpOptions, body: (comm: Comm) => Promise<void>): Promise<void> {
    if (this.#broken) throw this.#broken;
    if (this.#destroyed) {
      throw new GroupDestroyedError("the process group was destroyed", { rank: this.rank, op: call.name });
    }
    if (!this.#comm) await this.connect();
    const comm = this.#comm!;
    const ms = opts.timeoutMs ?? this.#opts.timeoutMs;
    const h = this.#monitor.begin(call, false);
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
      this.#monitor.end(h, call);
    } catch (e) {
      const err = e instanceof CollectiveMismatchError && e.op === undefined
        // The transport that noticed knows the peer, not the operation: name it here.
        ? new CollectiveMismatchError({ ...e.expected }, { ...e.received }, {
          rank: this.rank,
          op: call.name,
          peer: e.peer,
          cause: e,
        })
        : e instanceof ChoirError
        ? e
        : new PeerLostError(`${call.name} failed: ${(e as Error).message}`, {
          rank: this.rank,
          op: call.name,
          cause: e,
        });
      if (!(err instanceof InvalidArgumentError)) {
        // The byte streams are now in an unknown state: stop using them, once the cause is shared
        // (a rank that fails because this one closes its links then names the real cause).
        const settled = await this.#monitor.failed(call, err);
        this.#monitor.end(h, call, settled);
        this.#broken ??= settled;
        await this.#transport.close(settled);
        throw settled;
      }
      this.#monitor.end(h, call, err);
      throw err;
    }
  }
}

/** Runs `f`, turning a synchronous throw (a bad argument) into a rejected promise. */
function rejecting<T>(f: () => Promise<T>): Promise<T> {
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

/** Whether `t` is a GpuTensor, told by its mark (`gpu_brand.ts`): `gpu/` loads only on first GPU use. */
function isGpu(t: CpuTensor | GpuTensor | null): t is GpuTensor {
  return isGpuTensorLike(t);
}

/** `t` as a GpuTensor, or InvalidArgumentError: one call may not mix GPU and CPU tensors. */
function gpu(op: string, t: CpuTensor | GpuTensor | null): GpuTensor {
  if (isGpu(t)) return t;
  throw new InvalidArgumentError(`${op}: mixing GpuTensor and CPU tensors in one call`, { op });
}

/** Whether two non-empty tensors share bytes. */
function overlaps(a: CpuTensor, b: CpuTensor): boolean {
  return a.buffer === b.buffer && a.byteLength > 0 && b.byteLength > 0 &&
    a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

function copyOf<T extends CpuTensor>(t: T): T {
  const c = allocLike(t, t.length);
  bytesOf(c).set(bytesOf(t));
  return c;
}
