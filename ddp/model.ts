/**
 * @module
 * The model interface DistributedDataParallel works with, independent of any framework: named
 * parameters, each with a value and a gradient buffer of the same length, and a signal during backward
 * when a parameter's gradient is final. ddp/nn implements it; adapters (TensorFlow.js) wrap other
 * frameworks. Tensors are host typed arrays ({@link Model}) or GpuTensors ({@link GpuModel}).
 */

import type { GpuTensor } from "../gpu/tensor.ts";

/** A float tensor a host parameter's value or gradient lives in. */
export type ParamTensor = Float32Array | Float64Array | Uint16Array;

/** One trainable parameter. */
export interface Parameter {
  /** A name unique in its model (e.g. `fc1.weight`), the same on every rank. */
  readonly name: string;
  /** The value, updated in place by the optimizer. */
  readonly data: ParamTensor;
  /** The gradient, the same length as `data`; backward accumulates into it (`+=`). */
  readonly grad: ParamTensor;
  /** Element type of `data` and `grad` when `data` is a Uint16Array (`f16` or `bf16`). */
  readonly dtype?: "f32" | "f64" | "f16" | "bf16";
  /**
   * The shape (row-major, e.g. `[out, in]` for a linear weight); optional. Hooks that work on
   * matrices (PowerSGD) use it; without it a parameter counts as a vector.
   */
  readonly shape?: readonly number[];
  /** Whether it is trained (default true); frozen parameters are neither synchronized nor reduced. */
  readonly requiresGrad?: boolean;
}

/** A non-trainable state tensor (running statistics and the like), broadcast from rank 0 like parameters. */
export interface Buffer {
  /** A name unique in its model. */
  readonly name: string;
  /** The value. */
  readonly data: ParamTensor;
}

/** Called during backward once the gradient of `param` is final for this backward pass. */
export type GradReadyHook = (param: Parameter) => void;

/**
 * What DistributedDataParallel needs from a model. The order of {@link Model.parameters} must be the
 * same on every rank; backward must call the installed hook once per parameter whose gradient it
 * produced, as soon as that gradient is final (so communication can overlap the rest of backward).
 */
export interface Model {
  /** Every parameter, in a fixed order (forward order). */
  parameters(): readonly Parameter[];
  /** Non-trainable state to keep equal across ranks (default: none). */
  buffers?(): readonly Buffer[];
  /** Installs the hook backward calls per ready gradient (null removes it). */
  setGradReadyHook(hook: GradReadyHook | null): void;
  /**
   * Optional: makes `grad` (same element type and length, already holding the current gradient) the
   * gradient of `param` from now on; backward must then accumulate into it. With it, DDP's
   * `gradientAsBucketView` puts the gradients inside the buckets themselves (torch's
   * `gradient_as_bucket_view`), so no gradient is copied into a bucket or back.
   */
  setGrad?(param: Parameter, grad: ParamTensor): void;
}

/** One trainable parameter of a {@link GpuModel}: value and gradient are GpuTensors on one device. */
export interface GpuParameter {
  /** A name unique in its model, the same on every rank. */
  readonly name: string;
  /** The value (f32, f64, f16 or bf16), updated in place by the optimizer. */
  readonly data: GpuTensor;
  /** The gradient, same dtype and length as `data`; backward accumulates into it. */
  readonly grad: GpuTensor;
  /** The shape (row-major); optional. */
  readonly shape?: readonly number[];
  /** Whether it is trained (default true). */
  readonly requiresGrad?: boolean;
}

/** A non-trainable state tensor of a {@link GpuModel}, broadcast from rank 0 like parameters. */
export interface GpuBuffer {
  /** A name unique in its model. */
  readonly name: string;
  /** The value. */
  readonly data: GpuTensor;
}

/** Called during backward once the gradient of a GPU parameter is final (its kernels are queued). */
export type GpuGradReadyHook = (param: GpuParameter) => void;

/**
 * A model whose parameters live on a GPU, for DistributedDataParallel: the same contract as
 * {@link Model}, with GpuTensors. The hook may run as soon as the kernels producing a gradient are
 * queued on the default stream: DDP's collectives wait for that stream's work before reading it.
 */
export interface GpuModel {
  /** Every parameter, in a fixed order (forward order). */
  parameters(): readonly GpuParameter[];
  /** Non-trainable state to keep equal across ranks (default: none). */
  buffers?(): readonly GpuBuffer[];
  /** Installs the hook backward calls per ready gradient (null removes it). */
  setGradReadyHook(hook: GpuGradReadyHook | null): void;
  /** Optional, as {@link Model.setGrad}: makes `grad` (a view of a DDP bucket) the gradient of `param`. */
  setGrad?(param: GpuParameter, grad: GpuTensor): void;
}
