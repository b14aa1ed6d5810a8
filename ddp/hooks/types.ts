/**
 * @module
 * The communication hook contract: a hook receives a bucket of flattened local gradients and returns
 * the gradients averaged over the ranks, through the {@link HookGroup} it is given (which counts the
 * bytes). Built-in hooks live next to this file; DistributedDataParallel runs them in bucket order.
 */

import type { Parameter, ParamTensor } from "../model.ts";
import type { GradDType } from "../buckets.ts";

/** Reduction a hook asks of {@link HookGroup.allReduce}. */
export type HookReduceOp = "sum" | "avg";

/**
 * The collectives a hook may use: an allreduce over the data-parallel group, counted in
 * `DistributedDataParallel.stats`. Every rank must issue the same calls in the same order.
 */
export interface HookGroup {
  /** This rank. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  /**
   * Reduces `tensor` in place over the ranks (`op` default `"avg"`). A `Uint16Array` needs `dtype`
   * (`"f16"` or `"bf16"`).
   */
  allReduce(tensor: ParamTensor, opts?: { op?: HookReduceOp; dtype?: GradDType }): Promise<void>;
}

/** One bucket of gradients, as a hook sees it. */
export interface GradBucket {
  /** Position of the bucket in launch order (0 first). */
  readonly index: number;
  /** The bucket's gradients, flattened (the hook may change it). */
  readonly buffer: ParamTensor;
  /** Element type of `buffer`. */
  readonly dtype: GradDType;
  /** The parameters whose gradients `buffer` holds, in order. */
  readonly parameters: readonly Parameter[];
  /** Where each parameter's gradient starts in `buffer`. */
  readonly offsets: readonly number[];
  /** Whether it is the last bucket of the step. */
  readonly isLast: boolean;
  /** Number of synchronized steps before this one. */
  readonly iteration: number;
  /** The collectives to use. */
  readonly group: HookGroup;
}

/**
 * A communication hook: returns the bucket's gradients averaged over the ranks (the same length and
 * element type as `bucket.buffer`, which it may reuse). `state` is whatever was registered with it.
 */
export type CommHook<S = unknown> = (state: S, bucket: GradBucket) => Promise<ParamTensor>;
