/**
 * @module
 * The default communication hook: one allreduce (average) of the bucket in its own element type.
 */

import type { ParamTensor } from "../model.ts";
import type { GradBucket } from "./types.ts";

/** Averages the bucket with one allreduce, unchanged on the wire (the default hook). */
export async function allreduceHook(_state: unknown, bucket: GradBucket): Promise<ParamTensor> {
  const dtype = bucket.dtype === "f32" || bucket.dtype === "f64" ? undefined : bucket.dtype;
  await bucket.group.allReduce(bucket.buffer, { op: "avg", dtype });
  return bucket.buffer;
}
