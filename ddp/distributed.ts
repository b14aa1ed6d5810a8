/**
 * @module
 * `DistributedDataParallel`: keeps replicas of a {@link Model} equal across the ranks of a process
 * group by broadcasting the state from rank 0 once, then averaging gradients in buckets whose
 * allreduce starts while backward is still running; with noSync accumulation, join for uneven data,
 * unused parameters and communication hooks. The model and the optimizer are the caller's. A
 * {@link GpuModel}'s gradients are bucketed in device memory and averaged by GPU allReduce.
 */

import { type CpuTensor, type ProcessGroup, ReduceOp, releaseIpcMappings } from "../collectives/mod.ts";
import { InvalidArgumentError } from "../errors.ts";
import { type GpuTensor, isGpuTensor } from "../gpu/mod.ts";
import { type Bucket, type BucketRunner, Reducer } from "./reducer.ts";
import type { GradDType } from "./buckets.ts";
import { gpuMemory, type GradMemory, hostMemory } from "./grad_memory.ts";
import { type Control, controlBytes, controlRound } from "./join.ts";
import { allreduceHook } from "./hooks/default.ts";
import type { CommHook, HookGroup } from "./hooks/types.ts";
import type { Buffer, GpuBuffer, GpuModel, GpuParameter, Model, Parameter, ParamTensor } from "./model.ts";
import type { Timeline } from "./timeline.ts";

type AnyTensor = ParamTensor | GpuTensor;
type AnyParameter = Parameter | GpuParameter;
type AnyBuffer = Buffer | GpuBuffer;

/** Options of {@link DistributedDataParallel}. */
export interface DistributedDataParallelOptions {
  /** Cap of a gradient bucket in MiB (default 25). */
  bucketCapMb?: number;
  /** Cap of the first bucket in MiB (default 1), so communication starts early in backward. */
  firstBucketMb?: number;
  /**
   * Parameters whose gradient backward did not report are reduced with their current gradient
   * (zero after `zeroGrad()`) at `finishBackward()`, and the ranks agree on the parameters no rank
   * used, whose gradients are then left untouched (default false: every trainable parameter must be
   * reported every synchronized step).
   */
  findUnusedParameters?: boolean;
  /**
   * The set of parameters used does not change between steps: the first step finds the unused ones
   * (as with `findUnusedParameters`), later steps count them ready from the start (default false).
   */
  staticGraph?: boolean;
  /**
   * Buckets and gradients share memory, so averages land in place without copies (default false). A
   * model with `setGrad` (ddp/nn's Sequential) gets its gradients moved into the buckets, as torch's
   * `gradient_as_bucket_view` does (then in `pg.alloc` memory with `sharedBuckets`); for other models,
   * a bucket whose gradients are contiguous in one ArrayBuffer is a view over them.
   */
  gradientAsBucketView?: boolean;
  /** `beforeForward()` broadcasts the model's buffers from the authoritative rank (default true). */
  broadcastBuffers?: boolean;
  /**
   * With ranks joined (see {@link DistributedDataParallel.join}), divide the gradient sums by the
   * world size (default true, as torch's `join(divide_by_initial_world_size=True)`); false divides by
   * the number of ranks still training.
   */
  divideByInitialWorldSize?: boolean;
  /**
   * When every rank is on one host over shared memory (`pg.canAlloc`), the buckets DDP owns (all but
   * views of a model's own gradient memory) live in `pg.alloc` symmetric memory, where allreduce
   * reduces in place in one pass instead of copying through the arena (default true).
   */
  sharedBuckets?: boolean;
  /**
   * At construction, check that every rank has the same parameters and broadcast parameters and
   * buffers from rank 0 (default true, as torch's `init_sync`). false skips both: the caller has made
   * the replicas equal already (the fault-tolerant manager does, from a live peer).
   */
  initSync?: boolean;
  /** Timeout of every wait of DDP's collectives, in ms (default: the group's). */
  timeoutMs?: number;
  /**
   * Records each bucket's communication hook (from its start to the end of its allreduce) as a span
   * on track `comm` of this timeline; add the step's own phases to see what overlapped (default: none).
   */
  timeline?: Timeline;
}

/** Counters of the traffic DDP caused. */
export interface DdpStats {
  /** Synchronized steps done (also counted while joined). */
  steps: number;
  /**
   * Bytes of the tensors the communication hooks handed to allreduce, summed over all steps (what
   * travels is a fixed multiple of it for a given algorithm, e.g. `2 (n - 1) / n` for a ring).
   */
  bytesAllreduced: number;
  /** The same, for the last synchronized step only. */
  lastStepBytes: number;
  /** Bytes of control rounds, used-parameter maps and the like, summed over all steps. */
  controlBytes: number;
}

/**
 * Data-parallel training of a {@link Model} (host typed arrays) or a {@link GpuModel} (GpuTensors: the
 * buckets are device memory, averaged through CUDA IPC on one host and staged otherwise; communication
 * hooks are host-only) over a {@link ProcessGroup}.
 *
 * Per step: `zeroGrad()`, `await beforeForward()` (only needed with buffers), forward and backward
 * (backward reports each final gradient through the hook DDP installed, which starts bucket
 * allreduces), `await finishBackward()` (waits for them and writes averaged gradients back: torch
 * does this inside backward; here it is explicit), then the optimizer step. Every rank must run the
 * same sequence of synchronized steps, or call `join()` when its data runs out.
 *
 * @example
 * ```ts ignore
 * const ddp = await DistributedDataParallel.create(model, pg);
 * for (const batch of batches) {
 *   ddp.zeroGrad();
 *   await model.backwardAsync(model.forward(batch)); // the model calls the ready hook
 *   await ddp.finishBackward();
 *   optimizer.step();
 * }
 * await ddp.join();
 * ```
 */
export class DistributedDataParallel<M extends Model | GpuModel = Model> {
  /** The replicated model. */
  readonly model: M;
  /** This rank in the group. */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly size: number;
  /** Traffic counters. */
  readonly stats: DdpStats = { steps: 0, bytesAllreduced: 0, lastStepBytes: 0, controlBytes: 0 };
  /** Resolves once the initial state broadcast and the shape check are done (`create()` awaits it). */
  readonly ready: Promise<void>;
  #pg: ProcessGroup;
  #opts:
    & Required<Omit<DistributedDataParallelOptions, "timeoutMs" | "timeline">>
    & Pick<DistributedDataParallelOptions, "timeoutMs" | "timeline">;
  #reducer: Reducer<AnyTensor>;
  #memory: GradMemory<AnyTensor>;
  #index = new Map<AnyParameter, number>();
  #used: Uint8Array;
  #hook: CommHook<unknown> = allreduceHook;
  #hookState: unknown = null;
  #noSync = 0;
  #control: Promise<Control> | null = null;
  #rebuilt = false;
  #staticUnused: number[] = [];
  #lastActive: readonly number[];
  #group: HookGroup;
  #unused: string[] = [];
  #closed = false;

  /**
   * Wraps `model`; starts the broadcast of its parameters and buffers from rank 0 after checking that
   * every rank has the same parameters (await `ready`, or use {@link DistributedDataParallel.create}).
   */
  constructor(model: M, pg: ProcessGroup, opts: DistributedDataParallelOptions = {}) {
    this.model = model;
    this.#pg = pg;
    this.rank = pg.rank;
    this.size = pg.size;
    this.#opts = {
      bucketCapMb: opts.bucketCapMb ?? 25,
      firstBucketMb: opts.firstBucketMb ?? 1,
      findUnusedParameters: opts.findUnusedParameters ?? false,
      staticGraph: opts.staticGraph ?? false,
      gradientAsBucketView: opts.gradientAsBucketView ?? false,
      broadcastBuffers: opts.broadcastBuffers ?? true,
      divideByInitialWorldSize: opts.divideByInitialWorldSize ?? true,
      sharedBuckets: opts.sharedBuckets ?? true,
      initSync: opts.initSync ?? true,
      timeoutMs: opts.timeoutMs,
      timeline: opts.timeline,
    };
    for (const k of ["bucketCapMb", "firstBucketMb"] as const) {
      if (!(this.#opts[k] > 0)) throw new InvalidArgumentError(`${k} must be positive`, { rank: pg.rank });
    }
    const all: readonly AnyParameter[] = model.parameters();
    const trainable = all.filter((p) => p.requiresGrad !== false);
    this.#memory = memoryFor(all, pg.rank);
    trainable.forEach((p, i) => {
      if (p.grad.length !== p.data.length) {
        throw new InvalidArgumentError(`parameter ${p.name}: grad and data lengths differ`, {
          rank: pg.rank,
        });
      }
      this.#index.set(p, i);
    });
    this.#used = new Uint8Array(trainable.length);
    const setGrad = model.setGrad as ((p: AnyParameter, g: AnyTensor) => void) | undefined;
    this.#reducer = new Reducer<AnyTensor>(trainable, this.#memory, {
      capBytes: this.#opts.bucketCapMb * 2 ** 20,
      firstCapBytes: this.#opts.firstBucketMb * 2 ** 20,
      gradientAsBucketView: this.#opts.gradientAsBucketView,
      timeline: this.#opts.timeline,
      bindGrad: this.#opts.gradientAsBucketView && setGrad
        ? (i, g) => setGrad.call(model, trainable[i], g)
        : undefined,
      // Peers keep GPU buckets mapped between steps: unmapped everywhere before any is freed.
      beforeFree: this.#memory.gpu ? () => this.#releaseMappings() : undefined,
    });
    this.#lastActive = Array.from({ length: pg.size }, (_, r) => r);
    this.#group = this.#countingGroup();
    this.ready = this.#syncStates();
    this.ready.catch(() => {}); // surfaced by create() and every later call
    model.setGradReadyHook((p: AnyParameter) => this.#onReady(p));
  }

  /** Wraps `model` and waits for the initial broadcast: the usual way to build one. */
  static async create<M extends Model | GpuModel>(
    model: M,
    pg: ProcessGroup,
    opts: DistributedDataParallelOptions = {},
  ): Promise<DistributedDataParallel<M>> {
    const ddp = new DistributedDataParallel<M>(model, pg, opts);
    await ddp.ready;
    return ddp;
  }

  /** Names of the parameters in each gradient bucket, in launch order. */
  bucketNames(): string[][] {
    return this.#reducer.buckets.map((b) => b.params.map((i) => this.#reducer.params[i].name));
  }

  /** Whether the buckets DDP owns live in `pg.alloc` symmetric memory (see `sharedBuckets`); after `ready`. */
  get bucketsInSharedMemory(): boolean {
    return this.#reducer.sharedStorage;
  }

  /** Names of the parameters no rank used in the last synchronized step (with `findUnusedParameters`). */
  get unusedParameters(): readonly string[] {
    return this.#unused;
  }

  /**
   * Replaces the default communication hook (an average by allreduce) with `hook`, called with
   * `state` for every bucket. Register it on every rank, before the first step.
   */
  registerCommHook<S>(state: S, hook: CommHook<S>): void {
    if (this.#memory.gpu) {
      throw new InvalidArgumentError(
        "communication hooks work on host gradients; a GpuModel's buckets are averaged by GPU allReduce",
        { rank: this.#pg.rank, op: "DistributedDataParallel.registerCommHook" },
      );
    }
    if (this.#reducer.active || this.stats.steps > 0) {
      throw new InvalidArgumentError("registerCommHook must be called before the first step", {
        rank: this.#pg.rank,
      });
    }
    this.#hookState = state;
    this.#hook = hook as CommHook<unknown>;
  }

  /** Removes DDP's gradient-ready hook from the model; backward then runs without communication. */
  detach(): void {
    this.model.setGradReadyHook(null);
  }

  /** Sets every trainable gradient to zero. */
  zeroGrad(): void {
    for (const p of this.#reducer.params) this.#memory.zero(p.grad);
  }

  /** Whether the model's gradients are on a GPU (a {@link GpuModel}). */
  get onGpu(): boolean {
    return this.#memory.gpu;
  }

  /**
   * Detaches from the model and frees what DDP holds: for a GpuModel, unmaps the peers' buckets (a
   * barrier: every rank calls it) and frees the device buckets. Call before freeing the model; a
   * second call does nothing.
   */
  async close(): Promise<void> {
    this.detach();
    if (!this.#memory.gpu || this.#closed) return;
    this.#closed = true;
    await this.#releaseMappings();
    this.#reducer.dispose();
  }

  async #releaseMappings(): Promise<void> {
    releaseIpcMappings();
    await this.#pg.barrier({ timeoutMs: this.#opts.timeoutMs });
  }

  /**
   * Runs `fn` (forward and backward of micro-steps) without communication: gradients accumulate
   * locally, and the next synchronized backward averages the accumulated sums.
   */
  async noSync<T>(fn: () => T | Promise<T>): Promise<T> {
    this.#noSync++;
    try {
      return await fn();
    } finally {
      this.#noSync--;
    }
  }

  /**
   * Call before forward in a synchronized step: starts the step and, with `broadcastBuffers`,
   * copies the model's buffers from the authoritative rank (the lowest one still training).
   */
  async beforeForward(): Promise<void> {
    await this.ready;
    const buffers = this.#buffers();
    if (this.#noSync > 0 || !this.#opts.broadcastBuffers || buffers.length === 0 || this.#reducer.active) {
      return;
    }
    this.#beginStep(true);
    const c = await this.#control!;
    await this.#broadcastAll(buffers, c.authority);
  }

  /**
   * Ends a synchronized step after backward: reports unused parameters (if enabled), waits for every
   * bucket, writes the averaged gradients back and, after the first step, rebuilds the buckets in
   * the order the gradients became ready. Inside `noSync` it does nothing.
   */
  async finishBackward(): Promise<void> {
    await this.ready;
    if (this.#noSync > 0) return;
    this.#beginStep(false);
    const findUnused = this.#findsUnused();
    if (findUnused) this.#reducer.markRemaining();
    const c = await this.#control!;
    this.#control = null;
    await this.#reducer.settle();
    const globallyUsed = findUnused ? await this.#usedMap(this.#used) : null;
    if (this.#opts.staticGraph && this.stats.steps === 0) {
      this.#staticUnused = [...this.#used.keys()].filter((i) => !this.#used[i]);
    }
    const scale = this.#opts.divideByInitialWorldSize || c.active.length === 0
      ? 1
      : this.#pg.size / c.active.length;
    this.#reducer.writeBack(scale, (i) => !globallyUsed || globallyUsed[i] > 0);
    this.#unused = globallyUsed
      ? this.#reducer.params.filter((_, i) => globallyUsed[i] === 0).map((p) => p.name)
      : [];
    await this.#maybeRebuild(this.#reducer.readyOrder, c.authority);
    this.#endStep();
  }

  /**
   * Call when this rank has no more batches (every rank calls it once after its loop): until every
   * rank has joined, answers the synchronized steps of the others with zero gradients, so they do
   * not hang. Then every rank copies parameters and buffers from the lowest of the ranks that trained
   * longest. Result: at each step, the gradient sums are divided by the world size, as torch's default
   * (by the ranks still training with `divideByInitialWorldSize: false`), and all ranks end with the
   * same model.
   */
  async join(): Promise<void> {
    await this.ready;
    if (this.#reducer.active || this.#noSync > 0) {
      throw new InvalidArgumentError("join() inside a step or noSync", { rank: this.#pg.rank });
    }
    for (;;) {
      const c = await this.#controlRound(false, false);
      if (c.active.length === 0) break;
      if (c.buffers) await this.#broadcastAll(this.#buffers(), c.authority);
      const findUnused = this.#findsUnused();
      this.#reducer.begin(this.#runner(), true);
      this.#reducer.markRemaining();
      await this.#reducer.settle();
      if (findUnused) await this.#usedMap(new Uint8Array(this.#reducer.params.length));
      await this.#maybeRebuild([], c.authority);
      this.#endStep();
    }
    const root = this.#lastActive.length ? this.#lastActive[0] : 0;
    await this.#broadcastAll([...this.#parameters(), ...this.#buffers()], root);
  }

  #findsUnused(): boolean {
    return this.#opts.findUnusedParameters || (this.#opts.staticGraph && this.stats.steps === 0);
  }

  #onReady(p: AnyParameter): void {
    const i = this.#index.get(p);
    if (i === undefined) return;
    this.#used[i] = 1;
    if (this.#noSync > 0) return;
    this.#beginStep(false);
    this.#reducer.markReady(i);
  }

  #beginStep(buffers: boolean): void {
    if (this.#reducer.active) return;
    this.stats.lastStepBytes = 0;
    this.#control = this.#controlRound(true, buffers);
    // Awaited by finishBackward; a step abandoned before it (its group broke) must not leave it unhandled.
    this.#control.catch(() => {});
    const pre = this.#opts.staticGraph && this.stats.steps > 0 ? this.#staticUnused : [];
    this.#reducer.begin(this.#runner(), false, pre);
  }

  /** How this step's buckets are averaged: the hook (host) or a GPU allReduce. */
  #runner(): BucketRunner<AnyTensor> {
    const pg = this.#pg, stats = this.stats, timeoutMs = this.#opts.timeoutMs;
    if (this.#memory.gpu) {
      return async (b) => {
        const t = b.flat as GpuTensor;
        stats.bytesAllreduced += t.byteLength;
        stats.lastStepBytes += t.byteLength;
        await pg.allReduce(t, { op: ReduceOp.AVG, async: true, timeoutMs, gpu: { keepMapped: true } }).wait();
        return t;
      };
    }
    const hook = this.#hook, state = this.#hookState, iteration = this.stats.steps, group = this.#group;
    const params = this.#reducer.params as readonly Parameter[];
    return (b: Bucket<AnyTensor>, isLast) =>
      hook(state, {
        index: b.index,
        buffer: b.flat as ParamTensor,
        dtype: b.dtype,
        parameters: b.params.map((i) => params[i]),
        offsets: b.offsets,
        isLast,
        iteration,
        group,
      });
  }

  #controlRound(training: boolean, buffers: boolean): Promise<Control> {
    this.stats.controlBytes += controlBytes(this.#pg.size);
    return controlRound(this.#pg, training, buffers, this.#opts.timeoutMs).then((c) => {
      if (c.active.length) this.#lastActive = c.active;
      return c;
    });
  }

  #endStep(): void {
    this.stats.steps++;
    this.#used.fill(0);
  }

  async #usedMap(used: Uint8Array): Promise<Float32Array> {
    const m = Float32Array.from(used);
    this.stats.controlBytes += m.byteLength;
    await this.#pg.allReduce(m, { op: ReduceOp.SUM, timeoutMs: this.#opts.timeoutMs });
    return m;
  }

  async #maybeRebuild(order: readonly number[], root: number): Promise<void> {
    if (this.#rebuilt) return;
    this.#rebuilt = true;
    const agreed = await this.#pg.broadcastObject<number[]>(this.#pg.rank === root ? [...order] : null, {
      root,
      timeoutMs: this.#opts.timeoutMs,
    });
    await this.#reducer.rebuild(agreed);
  }

  async #syncStates(): Promise<void> {
    if (this.#opts.initSync) await this.#checkAndBroadcast();
    const viewsOfUserMemory = this.#opts.gradientAsBucketView && !this.model.setGrad;
    if (this.#opts.sharedBuckets && !viewsOfUserMemory && !this.#memory.gpu && this.#pg.canAlloc) {
      await this.#shareBuckets();
    }
  }

  async #checkAndBroadcast(): Promise<void> {
    const sig = (p: AnyParameter | AnyBuffer, kind: string) =>
      `${kind} ${p.name} ${p.data.length} ${
        isGpuTensor(p.data) ? p.data.dtype : "dtype" in p ? p.dtype ?? "" : ""
      } ${p.data.constructor.name}`;
    const mine = [
      ...this.#parameters().map((p) => sig(p, "param")),
      ...this.#buffers().map((b) => sig(b, "buffer")),
    ];
    const all = await this.#pg.allGatherObject(mine, { timeoutMs: this.#opts.timeoutMs });
    for (let r = 1; r < all.length; r++) {
      const a = all[0], b = all[r];
      const k = a.findIndex((s, i) => s !== b[i]);
      if (k >= 0 || a.length !== b.length) {
        const at = k >= 0 ? k : Math.min(a.length, b.length);
        throw new InvalidArgumentError(
          `model differs between ranks 0 and ${r} at entry ${at}: "${a[at] ?? "(none)"}" vs "${
            b[at] ?? "(none)"
          }"`,
          { rank: this.#pg.rank, op: "DistributedDataParallel" },
        );
      }
    }
    await this.#broadcastAll([...this.#parameters(), ...this.#buffers()], 0);
  }

  /** Moves the bucket buffers into symmetric memory: one `pg.alloc` per gradient type (collective). */
  async #shareBuckets(): Promise<void> {
    const lengths = new Map<GradDType, number>();
    this.#reducer.params.forEach((p, i) => {
      const t = this.#reducer.dtypeOf(i);
      lengths.set(t, (lengths.get(t) ?? 0) + p.grad.length);
    });
    const storage = new Map<GradDType, AnyTensor>();
    for (const [t, len] of [...lengths].sort(([a], [b]) => a.localeCompare(b))) {
      storage.set(t, await this.#pg.alloc(t, len) as ParamTensor);
    }
    this.#reducer.useStorage(storage);
  }

  #parameters(): readonly AnyParameter[] {
    return this.model.parameters();
  }

  #buffers(): readonly AnyBuffer[] {
    return this.model.buffers?.() ?? [];
  }

  async #broadcastAll(items: readonly (AnyParameter | AnyBuffer)[], root: number): Promise<void> {
    const works = items.map((p) =>
      this.#pg.broadcast(p.data as CpuTensor | GpuTensor, {
        root,
        async: true,
        dtype: halfDType(p),
        timeoutMs: this.#opts.timeoutMs,
      })
    );
    for (const w of works) await w.wait();
  }

  #countingGroup(): HookGroup {
    const pg = this.#pg, stats = this.stats, timeoutMs = this.#opts.timeoutMs;
    return {
      rank: pg.rank,
      size: pg.size,
      allReduce(tensor: ParamTensor, opts = {}) {
        stats.bytesAllreduced += tensor.byteLength;
        stats.lastStepBytes += tensor.byteLength;
        const dtype = opts.dtype === "f16" || opts.dtype === "bf16" ? opts.dtype : undefined;
        const op = (opts.op ?? "avg") === "avg" ? ReduceOp.AVG : ReduceOp.SUM;
        return pg.allReduce(tensor as CpuTensor, { op, dtype, async: true, timeoutMs }).wait();
      },
    };
  }
}

/** The gradient memory of a model's parameters: all on the host or all on GPUs. */
function memoryFor(params: readonly AnyParameter[], rank: number): GradMemory<AnyTensor> {
  const onGpu = params.filter((p) => isGpuTensor(p.grad) || isGpuTensor(p.data)).length;
  if (onGpu > 0 && onGpu < params.length) {
    throw new InvalidArgumentError(
      `${onGpu} of ${params.length} parameters are GpuTensors: a model's parameters must all be on the host or all on GPUs`,
      { rank, op: "DistributedDataParallel" },
    );
  }
  return (onGpu > 0 ? gpuMemory : hostMemory) as GradMemory<AnyTensor>;
}

function halfDType(p: AnyParameter | AnyBuffer): "f16" | "bf16" | undefined {
  if (!(p.data instanceof Uint16Array)) return undefined;
  return "dtype" in p && p.dtype === "bf16" ? "bf16" : "f16";
}
