/**
 * @module
 * The mark every GpuTensor carries, so that code above `gpu/` can tell one from a typed array without
 * loading `gpu/` (CUDA bindings, cuBLAS, PTX). `gpu/tensor.ts` sets it; the GPU classes live there.
 */

/** The property key (from the global symbol registry) that every GpuTensor has, set to `true`. */
export const GPU_TENSOR: unique symbol = Symbol.for("choir.GpuTensor");

/** Whether `x` carries the GpuTensor mark (a GpuTensor, from any copy of this package). */
export function isGpuTensorLike(x: unknown): boolean {
  return typeof x === "object" && x !== null && GPU_TENSOR in x;
}
