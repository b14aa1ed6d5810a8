/**
 * @module
 * The steps a reduce op adds around the reduction itself, in one place for every reducing collective
 * on host tensors: PREMUL_SUM scales this rank's contribution by its factor before the sum, AVG
 * divides the result by the group's size after it. The reduction is the caller's (any algorithm).
 */

import { allocLike, bytesOf, type CpuTensor, type DType, ReduceOp } from "../dtype.ts";
import { divideInto, scaleInto } from "./kernels/mod.ts";

/**
 * What this rank contributes to a reduction by `op`: `input` itself, or for PREMUL_SUM `input` scaled by
 * `factor` (default 1), in place unless `copy` is given, in which case the copy it makes is scaled and
 * `input` is left as it was (a reduce's non-root must not see its tensor change).
 */
export function contribution(
  op: ReduceOp,
  dtype: DType,
  factor: number | undefined,
  input: CpuTensor,
  copy?: () => CpuTensor,
): CpuTensor {
  if (op !== ReduceOp.PREMUL_SUM) return input;
  const t = copy ? copy() : input;
  scaleInto(dtype, t, factor ?? 1);
  return t;
}

/** The last step of a reduction by `op` over `size` ranks, on its `result`: AVG divides it by `size`. */
export function finishReduction(op: ReduceOp, dtype: DType, result: CpuTensor, size: number): void {
  if (op === ReduceOp.AVG) divideInto(dtype, result, size);
}

/** A private copy of `t` (a contribution that must not change the caller's tensor). */
export function copyOf<T extends CpuTensor>(t: T): T {
  const c = allocLike(t, t.length);
  bytesOf(c).set(bytesOf(t));
  return c;
}
