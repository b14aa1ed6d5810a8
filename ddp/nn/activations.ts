/**
 * @module
 * Element-wise activations without parameters: {@link ReLU} and {@link GELU} (tanh approximation).
 */

import { InvalidArgumentError } from "../../errors.ts";
import type { Layer, NnParameter, ParamReady } from "./layer.ts";

/** `max(0, x)` element-wise. */
export class ReLU implements Layer {
  #y: Float32Array | null = null;

  /** None. */
  parameters(): readonly NnParameter[] {
    return [];
  }

  /** The same as its input. */
  outputSize(inFeatures: number): number {
    return inFeatures;
  }

  /** `max(0, x)`; keeps the output for backward. */
  forward(x: Float32Array, batch: number): Float32Array {
    void batch;
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) y[i] = x[i] > 0 ? x[i] : 0;
    this.#y = y;
    return y;
  }

  /** Passes the gradient where the output was positive. */
  backward(gradOut: Float32Array, _ready: ParamReady, needInputGrad: boolean): Float32Array | null {
    const y = this.#y;
    if (y === null) throw new InvalidArgumentError("ReLU: backward before forward", { op: "ReLU.backward" });
    this.#y = null;
    if (!needInputGrad) return null;
    const dx = new Float32Array(y.length);
    for (let i = 0; i < y.length; i++) dx[i] = y[i] > 0 ? gradOut[i] : 0;
    return dx;
  }
}

const C = Math.sqrt(2 / Math.PI);
const K = 0.044715;

/** GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`. */
export class GELU implements Layer {
  #x: Float32Array | null = null;

  /** None. */
  parameters(): readonly NnParameter[] {
    return [];
  }

  /** The same as its input. */
  outputSize(inFeatures: number): number {
    return inFeatures;
  }

  /** GELU of each element; keeps the input for backward. */
  forward(x: Float32Array, batch: number): Float32Array {
    void batch;
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      y[i] = 0.5 * v * (1 + Math.tanh(C * (v + K * v * v * v)));
    }
    this.#x = x;
    return y;
  }

  /** `gradOut * GELU'(x)`. */
  backward(gradOut: Float32Array, _ready: ParamReady, needInputGrad: boolean): Float32Array | null {
    const x = this.#x;
    if (x === null) throw new InvalidArgumentError("GELU: backward before forward", { op: "GELU.backward" });
    this.#x = null;
    if (!needInputGrad) return null;
    const dx = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      const t = Math.tanh(C * (v + K * v * v * v));
      const d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * C * (1 + 3 * K * v * v);
      dx[i] = gradOut[i] * d;
    }
    return dx;
  }
}
