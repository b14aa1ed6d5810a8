/**
 * @module
 * The gradient reducer of DistributedDataParallel: tracks which gradients are ready, launches a
 * bucket's communication hook as soon as the bucket is full (bucket i only after bucket i-1, so every
 * rank issues the same collectives in the same order), and writes the averaged gradients back.
 * Deciding when a step begins and ends, and what the other ranks agree on, is the caller's job.
 */

import { InvalidArgumentError } from "../errors.ts";
import { assignBuckets, type GradDType, gradDType, tensorOf } from "./buckets.ts";
import type { Parameter, ParamTensor } from "./model.ts";
import type { CommHook, GradBucket, HookGroup } from "./hooks/types.ts";
import type { Timeline } from "./timeline.ts";

/** A bucket: parameters whose gradients travel together. */
export interface Bucket {
  /** Launch position. */
  readonly index: number;
  /** Indices of its parameters (in the reducer's parameter list), in buffer order. */
  readonly params: readonly number[];
  /** Where each parameter's gradient starts in `flat`. */
  readonly offsets: readonly number[];
  /** Element type. */
  readonly dtype: GradDType;
  /** The flattened gradients (a view over the gradients themselves when `isView`). */
  readonly flat: ParamTensor;
  /** Whether `flat` is the gradients' own memory. */
  readonly isView: boolean;
}

/** Options of {@link Reducer}. */
export interface ReducerOptions {
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
  bindGrad?: (i: number, grad: ParamTensor) => void;
}

/** Tracks readiness and runs the hooks of one step at a time. */
export class Reducer {
  /** The parameters reduced (those that require gradients), in model order. */
  readonly params: readonly Parameter[];
  #opts: ReducerOptions;
  #buckets: Bucket[] = [];
  #bucketOf: Int32Array;
  #pending: number[] = [];
  #ready: Uint8Array;
  #order: number[] = [];
  #next = 0;
  #chain: Promise<void> = Promise.resolve();
  #results: (ParamTensor | null)[] = [];
  #failure: unknown = null;
  #inFlight = 0;
  #storage: ReadonlyMap<GradDType, ParamTensor> | null = null;
  #cursor = new Map<GradDType, number>();
  #step:
    | { iteration: number; group: HookGroup; hook: CommHook<unknown>; state: unknown; zeros: boolean }
    | null = null;

  /** Builds the initial buckets in reverse parameter order. */
  constructor(params: readonly Parameter[], opts: ReducerOptions) {
    this.params = params;
    this.#opts = opts;
    this.#bucketOf = new Int32Array(params.length);
    this.#ready = new Uint8Array(params.length);
    this.rebuild(params.map((_, i) => params.length - 1 - i));
  }

  /** Whether bucket buffers come from storage given to {@link useStorage}. */
  get sharedStorage(): boolean {
    return this.#storage !== null;
  }

  /** The buckets, in launch order. */
  get buckets(): readonly Bucket[] {
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

  /** Reassigns the buckets for gradients expected in `order` (missing parameters go last, reversed). */
  rebuild(order: readonly number[]): void {
    const seen = new Set(order);
    const full = [...order];
    for (let i = this.params.length - 1; i >= 0; i--) if (!seen.has(i)) full.push(i);
    const groups = assignBuckets(this.params, full, this.#opts.capBytes, this.#opts.firstCapBytes);
    this.#cursor.clear();
    // Gradients bound into buckets move with them; the new buckets may overlap the old ones, so the
    // values are kept aside first.
    const saved = this.#opts.bindGrad ? this.params.map((p) => p.grad.slice()) : null;
    this.#buckets = groups.map((idx, b) =>
      saved ? this.#bindBucket(b, idx, saved) : this.#makeBucket(b, idx)
    );
    this.#buckets.forEach((b) => b.params.forEach((i) => this.#bucketOf[i] = b.index));
  }

  #makeBucket(index: number, idx: number[]): Bucket {
    const dtype = gradDType(this.params[idx[0]]);
    if (this.#opts.gradientAsBucketView) {
      const byMem = [...idx].sort((a, b) => this.params[a].grad.byteOffset - this.params[b].grad.byteOffset);
      const first = this.params[byMem[0]].grad;
      let at = first.byteOffset;
      const offsets: number[] = [];
      let ok = true;
      for (const i of byMem) {
        const g = this.params[i].grad;
        if (g.buffer !== first.buffer || g.byteOffset !== at) ok = false;
        offsets.push((at - first.byteOffset) / g.BYTES_PER_ELEMENT);
        at += g.byteLength;
      }
      if (ok) {
        const len = (at - first.byteOffset) / first.BYTES_PER_ELEMENT;
        const flat = first instanceof Float32Array
          ? new Float32Array(first.buffer, first.byteOffset, len)
          : first instanceof Float64Array
          ? new Float64Array(first.buffer, first.byteOffset, len)
          : new Uint16Array(first.buffer, first.byteOffset, len);
        return { index, params: byMem, offsets, dtype, flat, isView: true };
      }
    }
    const offsets: number[] = [];
    let len = 0;
    for (const i of idx) {
      offsets.push(len);
      len += this.params[i].grad.length;
    }
    return { index, params: idx, offsets, dtype, flat: this.#flatOf(dtype, len), isView: false };
  }

  /** A bucket whose memory becomes its parameters' gradients (they keep their values). */
  #bindBucket(index: number, idx: number[], saved: readonly ParamTensor[]): Bucket {
    const offsets: number[] = [];
    let len = 0;
    for (const i of idx) {
      offsets.push(len);
      len += this.params[i].grad.length;
    }
    const dtype = gradDType(this.params[idx[0]]);
    const flat = this.#flatOf(dtype, len);
    idx.forEach((i, k) => {
      const view = flat.subarray(offsets[k], offsets[k] + saved[i].length);
      view.set(saved[i]);
      this.#opts.bindGrad!(i, view);
    });
    return { index, params: idx, offsets, dtype, flat, isView: true };
  }

  /** A bucket's own buffer: the next `len` elements of the shared storage, or a new array. */
  #flatOf(dtype: GradDType, len: number): ParamTensor {
    const store = this.#storage?.get(dtype);
    if (!store) return tensorOf(dtype, len);
    const at = this.#cursor.get(dtype) ?? 0;
    this.#cursor.set(dtype, at + len);
    return store.subarray(at, at + len);
  }

  /**
   * Puts the buckets that are not views into `storage` (one tensor per element type, as long as all
   * gradients of that type), in bucket order: with `pg.alloc` memory, every rank's buckets then sit
   * at the same offsets of symmetric memory, where allreduce runs in place. Rebuilds the buckets.
   */
  useStorage(storage: ReadonlyMap<GradDType, ParamTensor>): void {
    this.#storage = storage;
    this.rebuild(this.#buckets.flatMap((b) => b.params));
  }

  /**
   * Starts a step: nothing is ready. With `zeros`, buckets carry zeros instead of gradients (a rank
   * that has joined and only answers the others' collectives).
   */
  begin(
    iteration: number,
    group: HookGroup,
    hook: CommHook<unknown>,
    state: unknown,
    zeros = false,
    preReady: Iterable<number> = [],
  ): void {
    this.#step = { iteration, group, hook, state, zeros };
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
    if (step.zeros) bucket.flat.fill(0);
    else if (!bucket.isView) {
      bucket.params.forEach((i, k) => bucket.flat.set(this.params[i].grad, bucket.offsets[k]));
    }
    const gb: GradBucket = {
      index: b,
      buffer: bucket.flat,
      dtype: bucket.dtype,
      parameters: bucket.params.map((i) => this.params[i]),
      offsets: bucket.offsets,
      isLast: b === this.#buckets.length - 1,
      iteration: step.iteration,
      group: step.group,
    };
    // Hooks run one after another so that multi-round hooks issue collectives in the same order
    // everywhere; when none is running, the hook starts right here, inside backward.
    const timeline = this.#opts.timeline;
    const run = async () => {
      const start = timeline?.now() ?? 0;
      try {
        if (this.#failure) return;
        const res = await step.hook(step.state, gb);
        if (!step.zeros) this.#results[b] = res;
      } catch (e) {
        this.#failure = e;
      } finally {
        this.#inFlight--;
        timeline?.end(
          "comm",
          `bucket ${b} (${(bucket.flat.byteLength / 2 ** 20).toFixed(1)} MiB)`,
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
        { op: "DistributedDataParallel.finishBackward", rank: step.group.rank },
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
    this.#buckets.forEach((bucket, b) => {
      const res = this.#results[b];
      if (!res) return;
      if (res.length !== bucket.flat.length) {
        throw new InvalidArgumentError(
          `communication hook returned ${res.length} elements for a bucket of ${bucket.flat.length}`,
          { op: "DistributedDataParallel.finishBackward" },
        );
      }
      bucket.params.forEach((i, k) => {
        if (!keep(i)) return;
        const g = this.params[i].grad;
        const src = res.subarray(bucket.offsets[k], bucket.offsets[k] + g.length);
        if (src.buffer !== g.buffer || src.byteOffset !== g.byteOffset) g.set(src);
        if (scale !== 1) scaleInPlace(g, bucket.dtype, scale);
      });
    });
    this.#results = this.#buckets.map(() => null);
  }
}

function scaleInPlace(g: ParamTensor, dtype: GradDType, scale: number): void {
  if (!(g instanceof Uint16Array)) {
    for (let i = 0; i < g.length; i++) g[i] *= scale;
  } else if (dtype === "f16") {
    const h = new Float16Array(g.buffer, g.byteOffset, g.length);
    for (let i = 0; i < h.length; i++) h[i] *= scale;
  } else {
    const u = new Uint32Array(1);
    const f = new Float32Array(u.buffer);
    for (let i = 0; i < g.length; i++) {
      u[0] = g[i] << 16;
      f[0] *= scale;
      g[i] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
    }
  }
}
