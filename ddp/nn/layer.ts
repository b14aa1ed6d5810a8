/**
 * @module
 * What a layer of ddp/nn is: a parameter type with named f32 value and gradient, and the
 * {@link Layer} contract {@link Sequential} composes (forward caches what backward needs).
 */

import type { Parameter } from "../model.ts";

/** A trainable f32 parameter of ddp/nn: value and gradient buffer of equal length. */
export class NnParameter implements Parameter {
  /** Name in its model (`0.weight`); set by the model that owns the layer. */
  name: string;
  /** The value, updated in place by the optimizer. */
  readonly data: Float32Array;
  /** The gradient; backward accumulates into it (`+=`). `Sequential.setGrad` may move it (DDP does). */
  grad: Float32Array;
  /** Always `f32`. */
  readonly dtype = "f32" as const;
  /** Whether it is trained. */
  readonly requiresGrad: boolean = true;
  /** The matrix shape (rows, columns) of a weight, for hooks that treat it as a matrix (PowerSGD). */
  readonly shape?: readonly number[];

  /** A parameter named `name` holding `data` (kept, not copied), with a zero gradient. */
  constructor(name: string, data: Float32Array, shape?: readonly number[]) {
    this.name = name;
    this.data = data;
    this.grad = new Float32Array(data.length);
    this.shape = shape;
  }
}

/** Called by a layer's backward for each of its parameters once its gradient is final. */
export type ParamReady = (param: NnParameter) => void;

/** A layer: forward on a batch of rows, backward through the cached forward. */
export interface Layer {
  /** The layer's parameters in forward order (named by short names like `weight`). */
  parameters(): readonly NnParameter[];
  /** Output features for `inFeatures` input features (throws if they do not fit the layer). */
  outputSize(inFeatures: number): number;
  /** Output of `batch` rows of `x` (row-major, `batch x inFeatures`); caches what backward needs. */
  forward(x: Float32Array, batch: number): Float32Array;
  /**
   * Accumulates parameter gradients from `gradOut` (the gradient of the loss with respect to the last
   * forward's output), calls `ready` for each parameter once its gradient is final (last parameter
   * first), and returns the gradient with respect to the input, or null when `needInputGrad` is false.
   */
  backward(gradOut: Float32Array, ready: ParamReady, needInputGrad: boolean): Float32Array | null;
  /**
   * The same as {@link Layer.backward}, with the heavy products off the calling thread, so that the
   * event loop (DDP's bucket allreduces) runs while they compute. Optional: without it,
   * `Sequential.backwardAsync` calls `backward`.
   */
  backwardAsync?(
    gradOut: Float32Array,
    ready: ParamReady,
    needInputGrad: boolean,
  ): Promise<Float32Array | null>;
}
