/**
 * @module
 * The fully connected layer `y = x W^T + b` (weight `out x in`, as in torch.nn.Linear), forward and
 * backward through {@link sgemm}.
 */

import { InvalidArgumentError } from "../../errors.ts";
import { sgemm, sgemmAsync } from "./gemm.ts";
import { type Layer, NnParameter, type ParamReady } from "./layer.ts";
import { seededRandom } from "./rng.ts";

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Seed of the weight and bias initialization (default 0); the same seed gives the same values. */
  seed?: number;
  /** Whether the layer has a bias (default true). */
  bias?: boolean;
}

/** A fully connected layer. */
export class Linear implements Layer {
  /** Input features. */
  readonly inFeatures: number;
  /** Output features. */
  readonly outFeatures: number;
  /** The weight, `outFeatures x inFeatures`, row-major. */
  readonly weight: NnParameter;
  /** The bias (length `outFeatures`), or null without one. */
  readonly bias: NnParameter | null;
  #x: Float32Array | null = null;
  #batch = 0;

  /**
   * A layer from `inFeatures` to `outFeatures`. Weight and bias start uniform in
   * `[-1/sqrt(in), 1/sqrt(in)]` (torch's default, Kaiming-uniform with a = sqrt(5)), drawn from a
   * generator seeded by `opts.seed`.
   */
  constructor(inFeatures: number, outFeatures: number, opts: LinearOptions = {}) {
    if (
      !(inFeatures > 0 && outFeatures > 0 && Number.isInteger(inFeatures) && Number.isInteger(outFeatures))
    ) {
      throw new InvalidArgumentError(`Linear: bad shape ${inFeatures} -> ${outFeatures}`, { op: "Linear" });
    }
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const rand = seededRandom(opts.seed ?? 0);
    const bound = 1 / Math.sqrt(inFeatures);
    const w = new Float32Array(inFeatures * outFeatures);
    for (let i = 0; i < w.length; i++) w[i] = (2 * rand() - 1) * bound;
    this.weight = new NnParameter("weight", w, [outFeatures, inFeatures]);
    if (opts.bias === false) this.bias = null;
    else {
      const b = new Float32Array(outFeatures);
      for (let i = 0; i < b.length; i++) b[i] = (2 * rand() - 1) * bound;
      this.bias = new NnParameter("bias", b);
    }
  }

  /** Weight, then bias. */
  parameters(): readonly NnParameter[] {
    return this.bias ? [this.weight, this.bias] : [this.weight];
  }

  /** `outFeatures`, after checking `inFeatures` matches. */
  outputSize(inFeatures: number): number {
    if (inFeatures !== this.inFeatures) {
      throw new InvalidArgumentError(
        `Linear: expected ${this.inFeatures} input features, got ${inFeatures}`,
        {
          op: "Linear",
        },
      );
    }
    return this.outFeatures;
  }

  /** `x W^T + b` for `batch` rows; keeps a reference to `x` for backward. */
  forward(x: Float32Array, batch: number): Float32Array {
    const inF = this.inFeatures, outF = this.outFeatures;
    if (x.length < batch * inF) {
      throw new InvalidArgumentError(`Linear: input has ${x.length} values, need ${batch * inF}`, {
        op: "Linear.forward",
      });
    }
    const y = new Float32Array(batch * outF);
    sgemm(false, true, batch, outF, inF, 1, x, this.weight.data, 0, y);
    if (this.bias) {
      const b = this.bias.data;
      for (let r = 0; r < batch; r++) {
        const o = r * outF;
        for (let j = 0; j < outF; j++) y[o + j] += b[j];
      }
    }
    this.#x = x;
    this.#batch = batch;
    return y;
  }

  /** dW += gOut^T x, db += column sums of gOut (bias reported ready first), dx = gOut W. */
  backward(gradOut: Float32Array, ready: ParamReady, needInputGrad: boolean): Float32Array | null {
    const x = this.#biasBackward(gradOut, ready);
    const batch = this.#batch, inF = this.inFeatures, outF = this.outFeatures;
    sgemm(true, false, outF, inF, batch, 1, gradOut, x, 1, this.weight.grad);
    ready(this.weight);
    if (!needInputGrad) return null;
    const dx = new Float32Array(batch * inF);
    sgemm(false, false, batch, inF, outF, 1, gradOut, this.weight.data, 0, dx);
    return dx;
  }

  /**
   * {@link backward} with both products on the FFI thread pool ({@link sgemmAsync}): the weight's
   * allreduce, started by `ready`, runs while dx computes.
   */
  async backwardAsync(
    gradOut: Float32Array,
    ready: ParamReady,
    needInputGrad: boolean,
  ): Promise<Float32Array | null> {
    const x = this.#biasBackward(gradOut, ready);
    const batch = this.#batch, inF = this.inFeatures, outF = this.outFeatures;
    await sgemmAsync(true, false, outF, inF, batch, 1, gradOut, x, 1, this.weight.grad);
    ready(this.weight);
    if (!needInputGrad) return null;
    const dx = new Float32Array(batch * inF);
    await sgemmAsync(false, false, batch, inF, outF, 1, gradOut, this.weight.data, 0, dx);
    return dx;
  }

  /** db += column sums of gOut, reported ready; returns (and releases) the cached input. */
  #biasBackward(gradOut: Float32Array, ready: ParamReady): Float32Array {
    const x = this.#x;
    if (x === null) {
      throw new InvalidArgumentError("Linear: backward before forward", { op: "Linear.backward" });
    }
    this.#x = null;
    const batch = this.#batch, outF = this.outFeatures;
    if (this.bias) {
      const db = this.bias.grad;
      for (let r = 0; r < batch; r++) {
        const o = r * outF;
        for (let j = 0; j < outF; j++) db[j] += gradOut[o + j];
      }
      ready(this.bias);
    }
    return x;
  }
}
