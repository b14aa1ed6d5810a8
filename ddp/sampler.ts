/**
 * @module
 * `DistributedSampler`: splits the indices of a dataset among the ranks, shuffled with a seed and an
 * epoch so that every rank computes the same permutation, padded by wrapping around (or with the tail
 * dropped) so that every rank gets the same number. `reshard()` splits what is left of an epoch over a
 * new membership (fault-tolerant training). Loading the samples is left to the caller.
 */

import { InvalidArgumentError } from "../errors.ts";

/** Options of {@link DistributedSampler}. */
export interface DistributedSamplerOptions {
  /** Number of ranks sharing the dataset (usually `pg.size`). */
  numReplicas: number;
  /** This rank's share (usually `pg.rank`). */
  rank: number;
  /** Shuffle the indices every epoch (default true). */
  shuffle?: boolean;
  /** Seed of the shuffle; must be the same on every rank (default 0). */
  seed?: number;
  /**
   * Drop the tail that does not divide evenly among the ranks (default false: pad by repeating
   * indices from the start, so a few samples are seen twice in an epoch).
   */
  dropLast?: boolean;
}

/**
 * Yields this rank's indices of a dataset of `datasetLength` samples for the current epoch.
 * Rank `r` of `n` gets positions `r, r + n, r + 2n, ...` of the epoch's permutation, so the ranks'
 * shares are disjoint and together cover every index once (with padding: the repeated ones twice).
 *
 * @example
 * ```ts
 * import { DistributedSampler } from "@choir/choir/ddp";
 * const sampler = new DistributedSampler(1000, { numReplicas: 4, rank: 1, seed: 7 });
 * for (let epoch = 0; epoch < 3; epoch++) {
 *   sampler.setEpoch(epoch);
 *   for (const i of sampler) void i; // load sample i
 * }
 * ```
 */
export class DistributedSampler implements Iterable<number> {
  /** Number of samples in the dataset. */
  readonly datasetLength: number;
  /** Whether indices are shuffled. */
  readonly shuffle: boolean;
  /** The seed. */
  readonly seed: number;
  /** Whether the uneven tail is dropped. */
  readonly dropLast: boolean;
  #numReplicas: number;
  #rank: number;
  #consumed = 0;
  #epoch = 0;
  /** The epoch whose order is cached, and that order. */
  #cached: { epoch: number; order: readonly number[] } | null = null;

  /** A sampler over `datasetLength` samples; see {@link DistributedSamplerOptions}. */
  constructor(datasetLength: number, opts: DistributedSamplerOptions) {
    const { numReplicas, rank } = opts;
    if (!Number.isInteger(datasetLength) || datasetLength < 0) {
      throw new InvalidArgumentError(`datasetLength must be a non-negative integer, got ${datasetLength}`);
    }
    checkShare(numReplicas, rank);
    this.datasetLength = datasetLength;
    this.#numReplicas = numReplicas;
    this.#rank = rank;
    this.shuffle = opts.shuffle ?? true;
    this.seed = opts.seed ?? 0;
    this.dropLast = opts.dropLast ?? false;
  }

  /** Number of ranks sharing the dataset (changed by {@link reshard}). */
  get numReplicas(): number {
    return this.#numReplicas;
  }

  /** This rank's share (changed by {@link reshard}). */
  get rank(): number {
    return this.#rank;
  }

  /**
   * Positions of the epoch's order used before the current sharding began: 0 after `setEpoch`, the
   * `consumed` of the last {@link reshard}.
   */
  get consumed(): number {
    return this.#consumed;
  }

  /** Number of indices this rank gets in what is left of the epoch (all of it unless resharded). */
  get length(): number {
    const left = this.datasetLength - this.#consumed;
    return this.dropLast ? Math.floor(left / this.#numReplicas) : Math.ceil(left / this.#numReplicas);
  }

  /** Number of indices all ranks get together (`length * numReplicas`). */
  get totalSize(): number {
    return this.length * this.#numReplicas;
  }

  /** The current epoch. */
  get epoch(): number {
    return this.#epoch;
  }

  /**
   * Sets the epoch, which changes the shuffle, and starts it from its beginning (`consumed` 0); call it
   * at the start of every epoch on every rank.
   */
  setEpoch(epoch: number): void {
    this.#epoch = epoch;
    this.#consumed = 0;
  }

  /**
   * Splits the rest of the current epoch over a new membership: positions `consumed`,
   * `consumed + 1`, ... of the epoch's order (fixed by seed and epoch) are shared out as usual, rank
   * `rank` of `numReplicas` getting positions `consumed + rank`, `consumed + rank + numReplicas`, ...
   * (padded or dropped at the end as configured). So when every rank has used `b` indices per step,
   * the ranks together have used exactly positions `[consumed, consumed + b * numReplicas)`, and a
   * reshard at `consumed + b * numReplicas * steps` continues where they stopped: no sample of the
   * epoch is skipped or used twice. `reshard(n, r, 0)` is the plain sharding of the whole epoch.
   */
  reshard(numReplicas: number, rank: number, consumed = 0): void {
    checkShare(numReplicas, rank);
    if (!Number.isInteger(consumed) || consumed < 0 || consumed > this.datasetLength) {
      throw new InvalidArgumentError(
        `consumed must be an integer in [0, ${this.datasetLength}], got ${consumed}`,
      );
    }
    this.#numReplicas = numReplicas;
    this.#rank = rank;
    this.#consumed = consumed;
  }

  /** This rank's indices for the current epoch (from `consumed` on), in order. */
  indices(): number[] {
    const order = this.#order();
    const from = this.#consumed, left = this.datasetLength - from, total = this.totalSize;
    const mine: number[] = [];
    // Past the end, padding wraps round to the first positions of what was left.
    for (let i = this.#rank; i < total; i += this.#numReplicas) mine.push(order[from + (i % left)]);
    return mine;
  }

  /** The epoch's order of the whole dataset (cached: resharding asks for it again). */
  #order(): readonly number[] {
    if (this.#cached?.epoch === this.#epoch) return this.#cached.order;
    const order = this.shuffle
      ? permutation(this.datasetLength, this.seed, this.#epoch)
      : Array.from({ length: this.datasetLength }, (_, i) => i);
    this.#cached = { epoch: this.#epoch, order };
    return order;
  }

  /** Iterates over {@link DistributedSampler.indices}. */
  [Symbol.iterator](): Iterator<number> {
    return this.indices()[Symbol.iterator]();
  }
}

function checkShare(numReplicas: number, rank: number): void {
  if (!Number.isInteger(numReplicas) || numReplicas < 1) {
    throw new InvalidArgumentError(`numReplicas must be a positive integer, got ${numReplicas}`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= numReplicas) {
    throw new InvalidArgumentError(`rank must be in [0, ${numReplicas}), got ${rank}`);
  }
}

/** A permutation of `0..n-1` from seed and epoch (Fisher-Yates over splitmix32). */
function permutation(n: number, seed: number, epoch: number): number[] {
  const next = splitmix32((Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(epoch | 0, 0x85ebca6b)) >>> 0);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/** A small deterministic generator of numbers in [0, 1). */
function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    return (z >>> 0) / 4294967296;
  };
}
