/**
 * @module
 * The ProcessGroup, torch.distributed's collective API: the public face only. Each call is checked
 * (`validate.ts`), recorded (a sequence number), routed once (`route.ts`) and handed to one backend:
 * the channel algorithms over any transport (`channels/`), the same-host shared arena (`arena/`) or,
 * for GpuTensors, the GPU backend (`gpu/`), which stages through the first two. The op queue
 * (`op_queue.ts`) owns the order, timeouts, the monitor and failures. Subgroups are formed here;
 * opening their transports is left to the opener `initProcessGroup()` installs.
 */

import { AbortedError, type ChoirError, InvalidArgumentError } from "../errors.ts";
import type { Channel, Transport } from "../transports/transport.ts";
import { LazyChannel } from "../transports/lazy_channel.ts";
import type { Store } from "../transports/store/store.ts";
import { setHeaderNames } from "../transports/frame.ts";
import { type CpuTensor, type DType, DTYPES } from "../dtype.ts";
import type { GpuTensor } from "../gpu/tensor.ts";
import { isGpuTensorLike } from "../gpu_brand.ts";
import { Comm, opName } from "./comm.ts";
import type {
  AllToAllOptions,
  AsyncOptions,
  BarrierOptions,
  ExplainOptions,
  GroupStatus,
  NewGroupOptions,
  ObjectOptions,
  OpOptions,
  P2POp,
  P2POptions,
  ReduceOptions,
  RootObjectOptions,
  RootOptions,
  SubgroupSpec,
  SyncOptions,
} from "./options.ts";
import { ArgCheck } from "./validate.ts";
import { Router } from "./route.ts";
import { OpQueue } from "./op_queue.ts";
import { HostCalls } from "./host_calls.ts";
import { Subgroups } from "./subgroups.ts";
import { ChannelBackend, type PairLink } from "./channels/channel_backend.ts";
import { hierarchicalComms } from "./channels/allreduce_hierarchical.ts";
import { ArenaBackend } from "./arena/arena_backend.ts";
import { GpuBackend } from "./gpu/gpu_backend.ts";
import type { HostGroup } from "./gpu/gpu_route.ts";
import {
  type Algorithm,
  ALGORITHMS,
  type Explanation,
  FORCIBLE_OPS,
  isForcible,
  type PlanOp,
} from "./plan/plan.ts";
import { OpMonitor } from "./diagnostics/op_monitor.ts";
import type { Metrics } from "./diagnostics/metrics.ts";
import { DEFAULT_FLIGHT_RECORDER_SIZE } from "./diagnostics/flight_recorder.ts";
import type { Work } from "./work.ts";

setHeaderNames((op) => opName(op & 0xff, op >> 8), (d) => DTYPES[d] ?? String(d));

/**
 * Opens a subgroup's own transport (new connections, a new shm segment) under the job's store, and
 * returns it connected. `initProcessGroup()` installs one; a group built without it cannot split.
 */
export type SubgroupOpener = (spec: SubgroupSpec) => Promise<ProcessGroup>;

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
  /**
   * Called when the group breaks (a failed collective or {@link ProcessGroup.abort}), before its links
   * close: the world group sends the cause round its heartbeat ring.
   */
  onBreak?: (cause: ChoirError) => Promise<void>;
  /**
   * The job's verdict once it is known, else null: an error about the whole job (e.g. the
   * RendezvousError of a rank two processes claimed) that every call failing from then on reports
   * instead of what it saw (a peer's links closing because that peer learned it first).
   */
  verdict?: () => ChoirError | null;
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
  /**
   * When the group opens its links: `eager` (default) opens one to every peer in {@link ProcessGroup.connect},
   * so the first collective pays nothing; `lazy` opens each on first use, so the group connects only to
   * the peers its algorithms use (ring and tree neighbours, hierarchical leaders, point-to-point peers).
   * `initProcessGroup()` chooses eager up to 16 ranks and lazy above (`CHOIR_CONNECT`).
   */
  connect?: "eager" | "lazy";
}

/**
 * A group of ranks that run collectives together, like torch.distributed's ProcessGroup. Create
 * one with `initProcessGroup()`, smaller ones with {@link ProcessGroup.newGroup} and
 * {@link ProcessGroup.split}. Tensor calls are in place on the tensors passed in; collectives run
 * one at a time in the order they were called. Every operation returns a promise, or with
 * `{ async: true }` a {@link Work}. Tensors are typed arrays or GpuTensors (`gpu/`): a GPU allReduce runs
 * through CUDA IPC between ranks of one host, everything else is staged through pinned host memory
 * (`gpu_route.ts`). After a failed collective (which breaks the group) its destination is undefined, while
 * what it only reads (an out-of-place input, the root's tensor of broadcast) and tensors not passed to it
 * are untouched (README, "When a collective fails").
 */
export class ProcessGroup {
  /** This process's rank in the group. */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly size: number;
  readonly #transport: Transport;
  readonly #opts: ProcessGroupOptions;
  readonly #check: ArgCheck;
  readonly #router: Router;
  readonly #queue: OpQueue;
  readonly #channels: ChannelBackend;
  /** The shared arena, when every rank of the group is on this host (set by connect()). */
  #arena: ArenaBackend | null = null;
  readonly #gpu: GpuBackend;
  readonly #calls: HostCalls;
  /** What the GPU route gets of this group, made on first GPU use. */
  #host: HostGroup | null = null;
  readonly #globalOf: readonly number[];
  readonly #subgroups: Subgroups<ProcessGroup, PairLink>;
  readonly #monitor: OpMonitor;
  /** The channels of a lazy group made so far, by peer (empty for an eager one). */
  #lazy = new Map<number, LazyChannel>();

  /** Wraps a connected transport. Most users call `initProcessGroup()` instead. */
  constructor(transport: Transport, opts: ProcessGroupOptions) {
    const forced = opts.algorithm;
    if (forced !== undefined && !isForcible(forced)) {
      throw new InvalidArgumentError(
        `unknown algorithm "${forced}" (CHOIR_ALGO / algorithm); choose one of ${
          [...new Set(FORCIBLE_OPS.flatMap((op) => ALGORITHMS[op]))].join(", ")
        }`,
        { rank: transport.rank, op: "ProcessGroup" },
      );
    }
    this.#transport = transport;
    this.#opts = opts;
    this.rank = transport.rank;
    this.size = transport.size;
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
    this.#monitor = new OpMonitor({
      rank: this.rank,
      size: this.size,
      group: opts.group ?? 0,
      capacity: opts.flightRecorder ?? DEFAULT_FLIGHT_RECORDER_SIZE,
      store: opts.store,
      verdict: opts.verdict,
    });
    this.#check = new ArgCheck(this.rank, this.size);
    this.#router = new Router({
      rank: this.rank,
      size: this.size,
      transport: transport.name,
      hostOf: opts.hostOf,
      chunkBytes: opts.chunkBytes,
      algorithm: opts.algorithm,
      deterministic: opts.deterministic,
      lazy: opts.connect === "lazy",
    });
    this.#queue = new OpQueue(this.rank, this.#monitor, async (cause) => {
      await opts.onBreak?.(cause).catch(() => {});
      await transport.close(cause);
    });
    this.#channels = new ChannelBackend({
      rank: this.rank,
      size: this.size,
      queue: this.#queue,
      router: this.#router,
      connect: () => this.connect(),
      pairOf: (peer) => this.#subgroups.pair(peer) ?? Promise.resolve(null),
    });
    this.#calls = new HostCalls({
      rank: this.rank,
      size: this.size,
      timeoutMs: opts.timeoutMs,
      check: this.#check,
      router: this.#router,
      queue: this.#queue,
      channels: this.#channels,
      arena: () => this.#arena,
    });
    this.#gpu = new GpuBackend(this.#queue, () => this.#hostGroup());
    this.#subgroups = new Subgroups<ProcessGroup, PairLink>({
      rank: this.rank,
      tag: opts.tag ?? "pg0",
      globalOf: this.#globalOf,
      timeoutMs: opts.timeoutMs,
      opener: opts.subgroups,
      check: this.#check,
      exchange: (name, kind, mine) => {
        const run = () => this.#calls.exchange(name, kind, mine);
        return this.#queue.open ? run() : this.#queue.hold(run);
      },
      destroyed: () => this.#queue.destroyed,
      link: async (g, peer) => {
        if (!g.#channels.comm) await g.connect();
        return { comm: g.#channels.comm!, peer };
      },
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
      connections: this.connections,
      connectMode: this.#opts.connect ?? "eager",
    };
  }

  /**
   * The error that broke this group, or null while it is sound: a failed collective, `abort()`, or a
   * rank the heartbeat found lost between collectives. Every later call rejects with it.
   */
  get failure(): ChoirError | null {
    return this.#queue.broken;
  }

  /**
   * The links this rank holds to peers of the group now: the transport's connections where it counts
   * them (TCP sockets), else the peers whose channel is open. A lazy group starts with none.
   */
  get connections(): number {
    const held = this.#transport.connections?.();
    if (held !== undefined) return held;
    if (this.#opts.connect === "lazy") return [...this.#lazy.values()].filter((c) => c.opened).length;
    return this.#channels.comm ? this.size - 1 : 0;
  }

  /** The global rank of each rank of this group, in group-rank order. */
  get ranks(): readonly number[] {
    return this.#globalOf;
  }

  /** The global rank of `groupRank` (torch's `get_global_rank`). */
  globalRank(groupRank: number): number {
    return this.#globalOf[this.#check.peer("globalRank", groupRank, "group rank", true)];
  }

  /** The rank in this group of global rank `globalRank` (torch's `get_group_rank`); throws if it is not a member. */
  groupRank(globalRank: number): number {
    const r = this.#globalOf.indexOf(globalRank);
    if (r < 0) {
      throw this.#check.invalid(
        "groupRank",
        `global rank ${globalRank} is not a member of this group (${this.#globalOf})`,
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

  /**
   * Makes the group ready: an eager group opens the channel to every peer, so that the first collective
   * does not pay for connecting; a lazy one only prepares channels that open on first use.
   */
  async connect(): Promise<void> {
    const t = this.#transport;
    let channels: (Channel | null)[] | ((peer: number) => Channel | null);
    if (this.#opts.connect === "lazy") {
      const made = this.#lazy = new Map();
      channels = (p) => {
        if (p === this.rank || p < 0 || p >= this.size) return null;
        let ch = made.get(p);
        if (!ch) made.set(p, ch = new LazyChannel(p, (o) => t.channel(p, o)));
        return ch;
      };
    } else {
      channels = await Promise.all(
        Array.from({ length: this.size }, (_, p) => p === this.rank ? null : t.channel(p)),
      );
    }
    const chunkBytes = this.#opts.chunkBytes ?? 1 << 20;
    const comm = new Comm(this.rank, this.size, this.#opts.group ?? 0, channels, chunkBytes);
    const hier = this.#opts.hostOf ? hierarchicalComms(comm, this.#opts.hostOf) : null;
    // The shared arena serves the collectives when every rank of the group is on this host.
    const host = this.#transport.arena?.();
    if (host && host.size === this.size && !this.#arena) {
      this.#arena = new ArenaBackend(host, chunkBytes, this.#queue);
      this.#router.useArena(this.#arena.chunkBytes);
    }
    const arena = this.#arena;
    this.#channels.attach(comm, hier, arena ? (call, ms) => arena.handshake(call, ms) : null);
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  allReduce(tensor: CpuTensor | GpuTensor, opts: ReduceOptions & AsyncOptions): Work;
  /** Reduces `tensor` across all ranks in place; every rank gets the result. */
  allReduce(tensor: CpuTensor | GpuTensor, opts?: ReduceOptions & SyncOptions): Promise<void>;
  allReduce(tensor: CpuTensor | GpuTensor, opts: ReduceOptions = NO_OPTIONS): Promise<void> | Work {
    if (!ArrayBuffer.isView(tensor) && isGpu(tensor)) {
      return this.#gpu.run("allReduce", opts, (r, g) => r.gpuAllReduce(g, tensor, opts));
    }
    if (opts.async !== true && this.#queue.open) {
      // The latency path: what issue() does, without its closure (a tiny same-host call feels it).
      try {
        return this.#calls.allReduce(tensor, opts);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.#queue.issue("allReduce", opts, () => this.#calls.allReduce(tensor, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  broadcast(tensor: CpuTensor | GpuTensor, opts: RootOptions & AsyncOptions): Work;
  /** Copies `tensor` from `root` to every rank. */
  broadcast(tensor: CpuTensor | GpuTensor, opts?: RootOptions & SyncOptions): Promise<void>;
  broadcast(tensor: CpuTensor | GpuTensor, opts: RootOptions = {}): Promise<void> | Work {
    if (isGpu(tensor)) return this.#gpu.run("broadcast", opts, (r, g) => r.gpuBroadcast(g, tensor, opts));
    return this.#queue.issue("broadcast", opts, () => this.#calls.broadcast(tensor, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  reduce(tensor: CpuTensor | GpuTensor, opts: ReduceOptions & RootOptions & AsyncOptions): Work;
  /** Reduces `tensor` from every rank into `tensor` on `root`; other ranks' tensors are unchanged. */
  reduce(tensor: CpuTensor | GpuTensor, opts?: ReduceOptions & RootOptions & SyncOptions): Promise<void>;
  reduce(tensor: CpuTensor | GpuTensor, opts: ReduceOptions & RootOptions = {}): Promise<void> | Work {
    if (isGpu(tensor)) return this.#gpu.run("reduce", opts, (r, g) => r.gpuReduce(g, tensor, opts));
    return this.#queue.issue("reduce", opts, () => this.#calls.reduce(tensor, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
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
      return this.#gpu.run(
        "allGather",
        opts,
        (r, g) => r.gpuAllGather(g, gpu("allGather", output), input, opts),
      );
    }
    return this.#queue.issue("allGather", opts, () => this.#calls.allGather(output, input, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
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
      return this.#gpu.run(
        "reduceScatter",
        opts,
        (r, g) => r.gpuReduceScatter(g, gpu("reduceScatter", output), input, opts),
      );
    }
    return this.#queue.issue("reduceScatter", opts, () => this.#calls.reduceScatter(output, input, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
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
    return this.#queue.issue(
      "reduceScatterList",
      opts,
      () => this.#calls.reduceScatterList(output, inputs, opts),
    );
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  barrier(opts: BarrierOptions & AsyncOptions): Work;
  /** Returns once every rank has called `barrier()`. */
  barrier(opts?: BarrierOptions & SyncOptions): Promise<void>;
  barrier(opts: BarrierOptions = {}): Promise<void> | Work {
    return this.#queue.issue("barrier", opts, () => this.#calls.barrier(opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  send(tensor: CpuTensor | GpuTensor, opts: P2POptions & { dst: number } & AsyncOptions): Work;
  /**
   * Sends `tensor` to rank `dst`; the matching `recv` must use the same size, dtype and tag.
   * Messages between two ranks are matched in the order they were issued.
   */
  send(tensor: CpuTensor | GpuTensor, opts: P2POptions & { dst: number } & SyncOptions): Promise<void>;
  send(tensor: CpuTensor | GpuTensor, opts: P2POptions & { dst: number }): Promise<void> | Work {
    if (isGpu(tensor)) return this.#gpu.run("send", opts, (r, g) => r.gpuSend(g, tensor, opts));
    return this.#queue.issue("send", opts, () => this.#calls.send(tensor, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  recv(tensor: CpuTensor | GpuTensor, opts: P2POptions & { src: number } & AsyncOptions): Work;
  /** Receives into `tensor` from rank `src`; sizes, dtype and tag must match the `send`. */
  recv(tensor: CpuTensor | GpuTensor, opts: P2POptions & { src: number } & SyncOptions): Promise<void>;
  recv(tensor: CpuTensor | GpuTensor, opts: P2POptions & { src: number }): Promise<void> | Work {
    if (isGpu(tensor)) return this.#gpu.run("recv", opts, (r, g) => r.gpuRecv(g, tensor, opts));
    return this.#queue.issue("recv", opts, () => this.#calls.recv(tensor, opts));
  }

  // ---- gather, scatter, list forms, all-to-all ---------------------------------------------

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
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
      return this.#gpu.run("gather", opts, (r, g) => r.gpuGather(g, output, gpu("gather", input), opts));
    }
    return this.#queue.issue("gather", opts, () => this.#calls.gather(output, input, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
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
    return this.#queue.issue("gatherList", opts, () => this.#calls.gatherList(outputs, input, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
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
      return this.#gpu.run("scatter", opts, (r, g) => r.gpuScatter(g, gpu("scatter", output), input, opts));
    }
    return this.#queue.issue("scatter", opts, () => this.#calls.scatter(output, input, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
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
    return this.#queue.issue("scatterList", opts, () => this.#calls.scatterList(output, inputs, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
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
    return this.#queue.issue("allGatherList", opts, () => this.#calls.allGatherList(outputs, input, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
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
      return this.#gpu.run(
        "allToAll",
        opts,
        (r, g) => r.gpuAllToAll(g, gpu("allToAll", output), input, opts),
      );
    }
    return this.#queue.issue("allToAll", opts, () => this.#calls.allToAll(output, input, opts));
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
      throw this.#check.invalid(name, "expects a non-empty list of P2POp");
    }
    ops.forEach((o, i) => {
      const where = `${name} ops[${i}]`;
      if (o.op !== "isend" && o.op !== "irecv") {
        throw this.#check.invalid(where, `op must be "isend" or "irecv", got ${String(o.op)}`);
      }
      this.#check.dtype(where, o.tensor, o.dtype);
      this.#check.peer(where, o.peer, o.op === "isend" ? "dst" : "src");
    });
    return ops.map((o) =>
      o.op === "isend"
        ? this.isend(o.tensor, { dst: o.peer, tag: o.tag, dtype: o.dtype })
        : this.irecv(o.tensor, { src: o.peer, tag: o.tag, dtype: o.dtype })
    );
  }

  // ---- object collectives -------------------------------------------------------------------
  // Values travel as msgpackr bytes: first their sizes (a small collective), then the bytes, each block
  // exactly its size. Each is one collective in the group's order, and every value returned is a
  // decoded copy. Bounded: an object over `maxObjectBytes` (default 64 MiB), nested over 100 levels,
  // cyclic, or holding a RegExp or an Error is refused with PayloadRefusedError on its sender and every
  // rank that would receive it (told in the size round) and the group goes on; a peer's size over
  // this rank's cap is refused before anything is allocated (docs/security.md).

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  broadcastObject<T>(obj: T | null | undefined, opts: RootObjectOptions & AsyncOptions): Work<T>;
  /**
   * Sends `obj` from `root` to every rank and returns it there, like torch's
   * `broadcast_object_list`; `obj` is ignored on other ranks (pass null). Every rank, the root
   * included, gets a decoded copy. Values are msgpackr-encoded with `moreTypes` (typed arrays, Maps,
   * Sets, Dates and BigInts keep their types); RegExp and Error objects and cycles are refused, like
   * objects over `maxObjectBytes`, with PayloadRefusedError on every rank.
   */
  broadcastObject<T>(obj: T | null | undefined, opts?: RootObjectOptions & SyncOptions): Promise<T>;
  broadcastObject<T>(obj: T | null | undefined, opts: RootObjectOptions = {}): Promise<T> | Work<T> {
    return this.#queue.issue("broadcastObject", opts, () => this.#calls.broadcastObject(obj, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  allGatherObject<T>(obj: T, opts: ObjectOptions & AsyncOptions): Work<T[]>;
  /**
   * Returns every rank's `obj`, in rank order, on every rank, like torch's `all_gather_object`
   * (which fills a list instead). Entries are decoded copies, this rank's own included.
   */
  allGatherObject<T>(obj: T, opts?: ObjectOptions & SyncOptions): Promise<T[]>;
  allGatherObject<T>(obj: T, opts: ObjectOptions = {}): Promise<T[]> | Work<T[]> {
    return this.#queue.issue("allGatherObject", opts, () => this.#calls.allGatherObject(obj, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  gatherObject<T>(obj: T, opts: RootObjectOptions & AsyncOptions): Work<T[] | null>;
  /**
   * Returns every rank's `obj`, in rank order, on `root` (null elsewhere), like torch's
   * `gather_object`. Entries are decoded copies.
   */
  gatherObject<T>(obj: T, opts?: RootObjectOptions & SyncOptions): Promise<T[] | null>;
  gatherObject<T>(obj: T, opts: RootObjectOptions = {}): Promise<T[] | null> | Work<T[] | null> {
    return this.#queue.issue("gatherObject", opts, () => this.#calls.gatherObject(obj, opts));
  }

  /** With `{ async: true }`: returns the call's {@link Work} at once (the next form says what it does). */
  scatterObject<T>(objs: readonly T[] | null, opts: RootObjectOptions & AsyncOptions): Work<T>;
  /**
   * Gives every rank r the root's `objs[r]` and returns it, like torch's `scatter_object_list`;
   * `objs` must hold `size` values on the root and is ignored elsewhere (pass null). Every rank,
   * the root included, gets a decoded copy.
   */
  scatterObject<T>(objs: readonly T[] | null, opts?: RootObjectOptions & SyncOptions): Promise<T>;
  scatterObject<T>(objs: readonly T[] | null, opts: RootObjectOptions = {}): Promise<T> | Work<T> {
    return this.#queue.issue("scatterObject", opts, () => this.#calls.scatterObject(objs, opts));
  }

  // ---- subgroups ----------------------------------------------------------------------------

  /**
   * Forms a group of `ranks` (ranks of this group) with its own connections, like torch's
   * `new_group`: every rank of this group calls it, with the same list, in the same order as its
   * other newGroup/split calls. Members get the new group, numbered in ascending order of `ranks`;
   * the others get null. The new group runs its collectives independently of this one, even at the
   * same time. Throws `InvalidArgumentError` on every rank when the ranks passed different lists.
   */
  newGroup(ranks: readonly number[], opts: NewGroupOptions = {}): Promise<ProcessGroup | null> {
    return this.#subgroups.newGroup(ranks, opts);
  }

  /**
   * Splits this group by `color`, like `MPI_Comm_split`: every rank calls it; ranks passing the same
   * color form one new group, numbered by `key` (ties by rank in this group), each with its own
   * connections. A rank passing `null` joins none and gets null.
   */
  split(color: number | null, key = 0, opts: NewGroupOptions = {}): Promise<ProcessGroup | null> {
    return this.#subgroups.split(color, key, opts);
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
      throw this.#check.invalid(
        "explain",
        `cannot explain "${op}": one of ${Object.keys(ALGORITHMS).join(", ")}`,
      );
    }
    if (!Number.isInteger(bytes) || bytes < 0) {
      throw this.#check.invalid("explain", `bytes must be a non-negative integer, got ${bytes}`);
    }
    return { ...this.#router.explain(op, bytes, opts), connections: this.connections };
  }

  /**
   * Allocates a tensor of `length` elements of `dtype` in shared memory that every rank of this host
   * maps (symmetric memory). A collective call: every rank must call it, in the same order, with the
   * same arguments. Collectives on such tensors (at the same offset on every rank) need no copy in or
   * out: allReduce then reduces in place in one pass. Ranks that pass different allocations, views at
   * different offsets, or an ordinary array against such a tensor get a CollectiveMismatchError on
   * every rank before any rank writes into another's array. Needs every rank on one host (shm or
   * Worker transport).
   */
  async alloc(dtype: DType, length: number): Promise<CpuTensor> {
    const arena = this.#arena;
    const store = this.#opts.store;
    if (!arena || !store) {
      throw this.#check.invalid(
        "alloc",
        "alloc needs every rank of the group on one host, over shared memory",
      );
    }
    if (!Number.isInteger(length) || length < 0) {
      throw this.#check.invalid("alloc", `length must be a non-negative integer, got ${length}`);
    }
    const t = this.#transport;
    return await arena.alloc(dtype, length, t.symmetric?.bind(t), {
      rank: this.rank,
      size: this.size,
      store,
      jobId: this.#opts.jobId,
    });
  }

  /**
   * Gives up at once, like torch's `abort()`: every operation in flight rejects with AbortedError
   * (within a nap of the shared arena, a few milliseconds), links are closed, later calls throw. The
   * other ranks see this rank's links close (PeerLostError) or time out in the arena. Then call
   * `destroy()` to release the rest. A ChoirError as `reason` is what the operations reject with
   * instead (e.g. the RendezvousError of a rank that two processes claimed).
   */
  async abort(reason: string | ChoirError = "the group was aborted"): Promise<void> {
    const err = typeof reason === "string"
      ? new AbortedError(reason, { rank: this.rank, op: "abort" })
      : reason;
    this.#queue.breakWith(err);
    this.#arena?.abort(err);
    await this.#opts.onBreak?.(err).catch(() => {});
    await this.#subgroups.abort(reason);
    await this.#transport.close(err);
  }

  /**
   * Destroys the groups made from this one, waits for running collectives, then closes every
   * connection. Later calls throw.
   */
  async destroy(): Promise<void> {
    if (this.#queue.destroyed) return;
    this.#queue.markDestroyed();
    await this.#subgroups.destroy();
    await this.#queue.close();
    this.#arena?.close();
    await this.#transport.close();
    await this.#opts.onDestroy?.();
  }

  /** What the GPU route stages through: this group's host collectives, each issued in call order. */
  #hostGroup(): HostGroup {
    if (this.#host) return this.#host;
    // deno-lint-ignore no-this-alias
    const pg = this;
    const q = this.#queue;
    const issue = (name: string, start: () => Promise<void>) => q.issue(name, {}, start) as Promise<void>;
    return this.#host = {
      rank: this.rank,
      size: this.size,
      get sameHost() {
        return pg.sameHost;
      },
      get sameProcess() {
        return pg.backend === "worker"; // Worker ranks: threads of this process
      },
      allReduce: (t, o, after) => issue("allReduce", () => this.#calls.allReduce(t, o, after)),
      broadcast: (t, o, after) => issue("broadcast", () => this.#calls.broadcast(t, o, after)),
      reduce: (t, o, after) => issue("reduce", () => this.#calls.reduce(t, o, after)),
      allGather: (out, inp, o, after) => issue("allGather", () => this.#calls.allGather(out, inp, o, after)),
      reduceScatter: (out, inp, o, after) =>
        issue("reduceScatter", () => this.#calls.reduceScatter(out, inp, o, after)),
      allToAll: (out, inp, o, after) => issue("allToAll", () => this.#calls.allToAll(out, inp, o, after)),
      gather: (out, inp, o, after) => issue("gather", () => this.#calls.gather(out, inp, o, after)),
      scatter: (out, inp, o, after) => issue("scatter", () => this.#calls.scatter(out, inp, o, after)),
      send: (t, o) => issue("send", () => this.#calls.send(t, o)),
      recv: (t, o) => issue("recv", () => this.#calls.recv(t, o)),
    };
  }
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

/** The options of a call given none (shared: a default `{}` would be a new object per call). */
const NO_OPTIONS: ReduceOptions = Object.freeze({});
