/**
 * @module
 * The gradient reducer of DistributedDataParallel: tracks which gradients are ready, launches a
 * bucket's communication hook as soon as the bucket is full (bucket i only after bucket i-1, so every
 * rank issues the same collectives in the same order), and writes the averaged gradients back.
 * Deciding when a step begins and ends, and what the other ranks agree on, is the caller's job.
 */

import { InvalidArgumentError } from "../errors.ts";
import { assignBuckets, type GradDType } from "./buckets.ts";
import type { GradMemory } from "./grad_memory.ts";
import type { Timeline } from "./timeline.ts";

/** What the reducer needs of a parameter: its name and its gradient (of tensor type `T`). */
export interface ReducedParam<T> {
  /** Unique name. */
  readonly name: string;
  /** The gradient. */
  readonly grad: T;
  /** Element type, for Uint16Array halves (`f16` or `bf16`). */
  readonly dtype?: string;
}

/** Runs one bucket's communication; resolves to the averaged gradients (the bucket or another tensor). */
export type BucketRunner<T> = (bucket: Bucket<T>, isLast: boolean) => Promise<T>;

/** A bucket: parameters whose gradients travel together. */
export interface Bucket<T> {
  /** Launch position. */
  readonly index: number;
  /** Indices of its parameters (in the reducer's parameter list), in buffer order. */
  readonly params: readonly number[];
  /** Where each parameter's gradient starts in `flat`. */
  readonly offsets: readonly number[];
  /** Element type. */
  readonly dtype: GradDType;
  /** The flattened gradients (a view over the gradients themselves when `isView`). */
  readonly flat: T;
  /** Whether `flat` is the gradients' own memory. */
  readonly isView: boolean;
}

/** Options of {@link Reducer}. */
export interface ReducerOptions<T> {
  /** Cap of every bucket but the first, in bytes. */
  capBytes: number;
  /** Cap of the first bucket, in bytes. */
  firstCapBytes: number;
  /** Use the gradients' memory as the bucket when they are contiguous. */
  gradientAsBucketView: boolean;
  /** Where each bucket's hook is recorded as a span on track `comm` (none: not recorded). */
  timeline?: Timeline;
  /**
   * Makes a view of a bucket the gradient of parameter `i` (the model's `setGrad`): then every bucket
   * is made of the gradients themselves, and nothing is copied in or out.
   */
  bindGrad?: (i: number, grad: T) => void;
  /**
   * Called before bucket memory the reducer owns is freed when buckets are rebuilt (GPU: peers may
   * still map it); the old buckets are freed once it resolves.
   */
  beforeFree?: () => Promise<void>;
}

/** Tracks readiness and runs the hooks of one step at a time. */
export class Reducer<T> {
  /** The parameters reduced (those that require gradients), in model order. */
  readonly params: readonly ReducedParam<T>[];
  /** The tensor operations of the gradients' kind (host or GPU). */
  readonly memory: GradMemory<T>;
  #opts: ReducerOptions<T>;
  #dtypes: GradDType[];
  #buckets: Bucket<T>[] = [];
  #owned: T[] = [];
  #bucketOf: Int32Array;
  #pending: number[] = [];
  #ready: Uint8Array;
  #order: number[] = [];
  #next = 0;
  #chain: Promise<void> = Promise.resolve();
  #results: (T | null)[] = [];
  #failure: unknown = null;
  #inFlight = 0;
  #storage: ReadonlyMap<GradDType, T> | null = null;
  #cursor = new Map<GradDType, number>();
  #step: { run: BucketRunner<T>; zeros: boolean } | null = null;

  /** Builds the initial buckets in reverse parameter order. */
  constructor(params: readonly ReducedParam<T>[], memory: GradMemory<T>, opts: ReducerOptions<T>) {
    this.params = params;
    this.memory = memory;
    this.#opts = opts;
    this.#dtypes = params.map((p) => memory.dtypeOf(p.grad, p.dtype));
    this.#bucketOf = new Int32Array(params.length);
    this.#ready = new Uint8Array(params.length);
    this.#assign(params.map((_, i) => params.length - 1 - i));
  }

  /** Whether bucket buffers come from storage given to {@link useStorage}. */
  get sharedStorage(): boolean {
    return this.#storage !== null;
  }

  /** The buckets, in launch order. */
  get buckets(): readonly Bucket<T>[] {
    return this.#buckets;
  }

  /** Indices of the parameters in the order they became ready in the current (or last) step. */
  get readyOrder(): readonly number[] {
    return this.#order;
  }

  /** Whether parameter `i` was marked ready in the current step. */
  isReady(i: number): boolean {
    return this.#ready[i] === 1;
  }

  /** Element type of parameter `i`'s gradient. */
  dtypeOf(i: number): GradDType {
    return this.#dtypes[i];
  }

  /**
   * Reassigns the buckets for gradients expected in `order` (missing parameters go last, reversed);
   * nothing changes when the buckets would be the same.
   */
  async rebuild(order: readonly number[]): Promise<void> {
    const groups = this.#groups(order);
    const same = groups.length === this.#buckets.length &&
      groups.every((g, b) => g.join() === this.#buckets[b].params.join());
    if (same) return;
    const old = this.#owned;
    // Gradients bound into buckets move with them; the new buckets may overlap the old ones, so the
    // values are kept aside first.
    const saved = this.#opts.bindGrad ? this.params.map((p) => this.memory.clone(p.grad)) : null;
    if (old.length && this.#opts.beforeFree) await this.#opts.beforeFree();
    this.#owned = [];
    this.#build(groups, saved);
    for (const t of [...old, ...(saved ?? [])]) this.memory.release(t);
  }

  #assign(order: readonly number[]): void {
    const saved = this.#opts.bindGrad ? this.params.map((p) => this.memory.clone(p.grad)) : null;
    this.#build(this.#groups(order), saved);
    for (const t of saved ?? []) this.memory.release(t);
  }

  #groups(order: readonly number[]): number[][] {
    const seen = new Set(order);
    const full = [...order];
    for (let i = this.params.length - 1; i >= 0; i--) if (!seen.has(i)) full.push(i);
    const sizes = this.params.map((p, i) => ({
      dtype: this.#dtypes[i],
      bytes: this.memory.byteLength(p.grad),
    }));
    return assignBuckets(sizes, full, this.#opts.capBytes, this.#opts.firstCapBytes);
  }

  #build(groups: number[][], saved: readonly T[] | null): void {
    this.#cursor.clear();
    this.#buckets = groups.map((idx, b) =>
      saved ? this.#bindBucket(b, idx, saved) : this.#makeBucket(b, idx)
    );
    this.#buckets.forEach((b) => b.params.forEach((i) => this.#bucketOf[i] = b.index));
  }

  #makeBucket(index: number, idx: number[]): Bucket<T> {
    const dtype = this.#dtypes[idx[0]];
    if (this.#opts.gradientAsBucketView) {
      const run = this.memory.contiguous(idx.map((i) => this.params[i].grad));
      if (run) {
        return {
          index,
          params: run.order.map((k) => idx[k]),
          offsets: run.offsets,
          dtype,
          flat: run.flat,
          isView: true,
        };
      }
    }
    const offsets: number[] = [];
    let len = 0;
    for (const i of idx) {
      offsets.push(len);
      len += this.memory.length(this.params[i].grad);
    }
    return { index, params: idx, offsets, dtype, flat: this.#flatOf(dtype, len, idx[0]), isView: false };
  }

  /** A bucket whose memory becomes its parameters' gradients (they keep their values). */
  #bindBucket(index: number, idx: number[], saved: readonly T[]): Bucket<T> {
    const offsets: number[] = [];
    let len = 0;
    for (const i of idx) {
      offsets.push(len);
      len += this.memory.length(this.params[i].grad);
    }
    const dtype = this.#dtypes[idx[0]];
    const flat = this.#flatOf(dtype, len, idx[0]);
    idx.forEach((i, k) => {
      const view = this.memory.view(flat, offsets[k], this.memory.length(saved[i]));
      this.memory.copy(view, saved[i]);
      this.#opts.bindGrad!(i, view);
    });
    return { index, params: idx, offsets, dtype, flat, isView: true };
  }

  /** A bucket's own buffer: the next `len` elements of the shared storage, or new memory. */
  #flatOf(dtype: GradDType, len: number, like: number): T {
    const store = this.#storage?.get(dtype);
    if (!store) {
      const t = this.memory.alloc(dtype, len, this.params[like].grad);
      this.#owned.push(t);
      return t;
    }
    const at = this.#cursor.get(dtype) ?? 0;
    this.#cursor.set(dtype, at + len);
    return this.memory.view(store, at, len);
  }

  /** Frees the bucket memory the reducer allocated (GPU; the reducer is unusable afterwards). */
  dispose(): void {
    for (const t of this.#owned) this.memory.release(t);
    this.#owned = [];
    this.#buckets = [];
  }

  /**
   * Puts the buckets that are not views into `storage` (one tensor per element type, as long as all
   * gradients of that type), in bucket order: with `pg.alloc` memory, every rank's buckets then sit
   * at the same offsets of symmetric memory, where allreduce runs in place. Rebuilds the buckets.
   */
  useStorage(storage: ReadonlyMap<GradDType, T>): void {
    this.#storage = storage;
    const saved = this.#opts.bindGrad ? this.params.map((p) => this.memory.clone(p.grad)) : null;
    const old = this.#owned;
    this.#owned = [];
    this.#build(this.#buckets.map((b) => [...b.params]), saved);
    for (const t of [...old, ...(saved ?? [])]) this.memory.release(t);
  }

  /**
   * Starts a step: nothing is ready. With `zeros`, buckets carry zeros instead of gradients (a rank
   * that has joined and only answers the others' collectives).
   */
  begin(run: BucketRunner<T>, zeros = false, preReady: Iterable<number> = []): void {
    this.#step = { run, zeros };
    this.#ready.fill(0);
    this.#order = [];
    this.#next = 0;
    this.#results = this.#buckets.map(() => null);
    this.#failure = null;
    this.#pending = this.#buckets.map((b) => b.params.length);
    for (const i of preReady) this.markReady(i, false);
  }

  /** Whether a step is in progress. */
  get active(): boolean {
    return this.#step !== null;
  }

  /** Marks parameter `i` ready; launches every bucket now complete, in order. */
  markReady(i: number, record = true): void {
    if (!this.#step) return;
    if (this.#ready[i]) {
      throw new InvalidArgumentError(
        `parameter ${this.params[i].name} was marked ready twice in one step (a parameter used twice must ` +
          `report its gradient once, when final)`,
        { op: "DistributedDataParallel.backward" },
      );
    }
    this.#ready[i] = 1;
    if (record) this.#order.push(i);
    this.#pending[this.#bucketOf[i]]--;
    while (this.#next < this.#buckets.length && this.#pending[this.#next] === 0) this.#launch(this.#next++);
  }

  /** Marks every parameter not yet ready (their current gradients take part). */
  markRemaining(): number[] {
    const missing: number[] = [];
    for (let i = 0; i < this.params.length; i++) if (!this.#ready[i]) missing.push(i);
    for (const i of missing) this.markReady(i, false);
    return missing;
  }

  #launch(b: number): void {
    const step = this.#step!;
    const bucket = this.#buckets[b];
    const mem = this.memory;
    if (step.zeros) mem.zero(bucket.flat);
    else if (!bucket.isView) {
      bucket.params.forEach((i, k) => {
        const g = this.params[i].grad;
        mem.copy(mem.view(bucket.flat, bucket.offsets[k], mem.length(g)), g);
      });
    }
    // Buckets run one after another so that multi-round hooks issue collectives in the same order
    // everywhere; when none is running, the hook starts right here, inside backward.
    const timeline = this.#opts.timeline;
    const isLast = b === this.#buckets.length - 1;
    const run = async () => {
      const start = timeline?.now() ?? 0;
      try {
        if (this.#failure) return;
        const res = await step.run(bucket, isLast);
        if (!step.zeros) this.#results[b] = res;
      } catch (e) {
        this.#failure = e;
      } finally {
        this.#inFlight--;
        timeline?.end(
          "comm",
          `bucket ${b} (${(mem.byteLength(bucket.flat) / 2 ** 20).toFixed(1)} MiB)`,
          start,
          `${b % 10}`,
        );
      }
    };
    this.#chain = this.#inFlight++ === 0 ? run() : this.#chain.then(run);
  }

  /** Waits for every bucket's hook (all buckets must have been launched); throws a hook's error. */
  async settle(): Promise<void> {
    const step = this.#step;
    if (!step) return;
    if (this.#next < this.#buckets.length) {
      const missing = this.params.filter((_, i) => !this.#ready[i]).map((p) => p.name);
      await this.#chain;
      this.#step = null;
      throw new InvalidArgumentError(
        `gradients of ${missing.length} parameter(s) were never reported ready (${
          missing.slice(0, 5).join(", ")
        }${missing.length > 5 ? ", ..." : ""}); pass findUnusedParameters: true if some are unused`,
        { op: "DistributedDataParallel.finishBackward" },
      );
    }
    await this.#chain;
    this.#step = null;
    if (this.#failure) throw this.#failure;
  }

  /**
   * Writes the settled results times `scale` into the gradients of the parameters for which
   * `keep(i)` holds (nothing after a step of zeros).
   */
  writeBack(scale: number, keep: (i: number) => boolean): void {
    const mem = this.memory;
    this.#buckets.forEach((bucket, b) => {
      const res = this.#results[b];
      if (!res) return;
      if (mem.length(res) !== mem.length(bucket.flat)) {
        throw new InvalidArgumentError(
          `communication hook returned ${mem.length(res)} elements for a bucket of ${
            mem.length(bucket.flat)
          }`,
          { op: "DistributedDataParallel.finishBackward" },
        );
      }
      bucket.params.forEach((i, k) => {
        if (!keep(i)) return;
        const g = this.params[i].grad;
        const src = mem.view(res, bucket.offsets[k], mem.length(g));
        if (!mem.same(src, g)) mem.copy(g, src);
        if (scale !== 1) mem.scale(g, bucket.dtype, scale);
      });
    });
    this.#results = this.#buckets.map(() => null);
  }
}
