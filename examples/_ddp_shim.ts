/**
 * @module
 * TEMPORARY stand-in for `ddp/sampler.ts` and `ddp/ddp.ts`, which are being written on another
 * branch; the examples import from here until those land, then switch to
 * `import { DistributedDataParallel, DistributedSampler } from "../ddp/mod.ts"`. Same API, naive
 * behaviour: the sampler follows torch's DistributedSampler, and DDP broadcasts parameters from rank 0
 * at creation and averages all gradients in one allReduce after backward (no buckets, no overlap).
 */

import { type ProcessGroup, ReduceOp } from "../mod.ts";
import type { Model } from "../ddp/model.ts";
import { seededRandom } from "../ddp/nn/rng.ts";

/** Options of {@link DistributedSampler}. */
export interface DistributedSamplerOptions {
  /** Number of ranks sharing the data set. */
  numReplicas: number;
  /** This rank. */
  rank: number;
  /** Shuffle every epoch (default true). */
  shuffle?: boolean;
  /** Seed of the shuffle, the same on every rank (default 0). */
  seed?: number;
}

/** Indices of this rank's share of a data set, padded to equal shares (torch's DistributedSampler). */
export class DistributedSampler implements Iterable<number> {
  readonly #len: number;
  readonly #opts: Required<DistributedSamplerOptions>;
  #epoch = 0;

  /** A sampler over `datasetLength` items. */
  constructor(datasetLength: number, opts: DistributedSamplerOptions) {
    this.#len = datasetLength;
    this.#opts = { shuffle: true, seed: 0, ...opts };
  }

  /** Indices per rank per epoch. */
  get length(): number {
    return Math.ceil(this.#len / this.#opts.numReplicas);
  }

  /** Selects the epoch's permutation (call before iterating each epoch). */
  setEpoch(epoch: number): void {
    this.#epoch = epoch;
  }

  /** This rank's indices for the current epoch. */
  *[Symbol.iterator](): Iterator<number> {
    const { numReplicas, rank, shuffle, seed } = this.#opts;
    const idx = Array.from({ length: this.#len }, (_, i) => i);
    if (shuffle) {
      const r = seededRandom(seed * 1_000_003 + this.#epoch);
      for (let i = idx.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [idx[i], idx[j]] = [idx[j], idx[i]];
      }
    }
    const total = this.length * numReplicas;
    for (let i = 0; idx.length < total; i++) idx.push(idx[i]);
    for (let i = rank; i < total; i += numReplicas) yield idx[i];
  }
}

/** Naive data parallelism: equal initial parameters, gradients averaged after backward. */
export class DistributedDataParallel<M extends Model> {
  /** The wrapped model. */
  readonly module: M;
  readonly #pg: ProcessGroup;

  private constructor(module: M, pg: ProcessGroup) {
    this.module = module;
    this.#pg = pg;
  }

  /** Wraps `model`, copying rank 0's parameters and buffers to every rank. */
  static async create<M extends Model>(model: M, pg: ProcessGroup): Promise<DistributedDataParallel<M>> {
    for (const p of model.parameters()) await pg.broadcast(p.data, { root: 0 });
    for (const b of model.buffers?.() ?? []) await pg.broadcast(b.data, { root: 0 });
    return new DistributedDataParallel(model, pg);
  }

  /** Averages every trainable gradient over the ranks (one flat allReduce). */
  async finishBackward(): Promise<void> {
    const params = this.module.parameters().filter((p) => p.requiresGrad !== false);
    const total = params.reduce((s, p) => s + p.grad.length, 0);
    const flat = new Float32Array(total);
    let o = 0;
    for (const p of params) {
      flat.set(p.grad, o);
      o += p.grad.length;
    }
    await this.#pg.allReduce(flat, { op: ReduceOp.AVG });
    o = 0;
    for (const p of params) {
      p.grad.set(flat.subarray(o, o + p.grad.length));
      o += p.grad.length;
    }
  }
}
