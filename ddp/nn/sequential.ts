/**
 * @module
 * {@link Sequential}: layers applied in order, implementing the DDP {@link Model} interface.
 * Parameters are named `<layer index>.<name>` (`0.weight`, `0.bias`, `2.weight`), as in
 * torch.nn.Sequential; backward reports each gradient ready as soon as it is final, last layer first.
 */

import { InvalidArgumentError } from "../../errors.ts";
import type { GradReadyHook, Model, Parameter, ParamTensor } from "../model.ts";
import type { Layer, NnParameter } from "./layer.ts";

/** Layers applied one after the other; a {@link Model} for DistributedDataParallel. */
export class Sequential implements Model {
  /** The layers, in forward order. */
  readonly layers: readonly Layer[];
  readonly #params: readonly NnParameter[];
  #hook: GradReadyHook | null = null;
  #batch = -1;

  /** Composes `layers`; names their parameters `<index>.<name>`. */
  constructor(...layers: Layer[]) {
    this.layers = layers;
    const params: NnParameter[] = [];
    layers.forEach((layer, i) => {
      for (const p of layer.parameters()) {
        p.name = `${i}.${p.name}`;
        params.push(p);
      }
    });
    this.#params = params;
  }

  /** Every parameter in forward order. */
  parameters(): readonly NnParameter[] {
    return this.#params;
  }

  /** Installs the hook backward calls once per parameter when its gradient is final (null removes it). */
  setGradReadyHook(hook: GradReadyHook | null): void {
    this.#hook = hook;
  }

  /**
   * Makes `grad` the gradient of `param` (one of this model's, same length, Float32Array). DDP calls it
   * with `gradientAsBucketView` so that gradients live inside its buckets.
   */
  setGrad(param: Parameter, grad: ParamTensor): void {
    const p = this.#params.find((q) => q === param);
    if (!p || !(grad instanceof Float32Array) || grad.length !== p.data.length) {
      throw new InvalidArgumentError(
        `Sequential.setGrad: ${
          p ? `a Float32Array of ${p.data.length} elements` : "one of this model's parameters"
        } is needed for ${param.name}`,
        { op: "Sequential.setGrad" },
      );
    }
    p.grad = grad;
  }

  /** Output features for `inFeatures` input features (checks every layer's shape). */
  outputSize(inFeatures: number): number {
    return this.layers.reduce((f, l) => l.outputSize(f), inFeatures);
  }

  /** Runs `batch` rows of `x` (row-major) through every layer; returns the last layer's output. */
  forward(x: Float32Array, batch: number): Float32Array {
    if (!(Number.isInteger(batch) && batch > 0)) {
      throw new InvalidArgumentError(`Sequential: bad batch ${batch}`, { op: "Sequential.forward" });
    }
    let h = x;
    for (const layer of this.layers) h = layer.forward(h, batch);
    this.#batch = batch;
    return h;
  }

  /**
   * Back-propagates `gradOut` (the loss gradient with respect to the last forward's output) through
   * the layers in reverse order, adding (`+=`) into each parameter's `grad` and calling the hook for
   * each parameter once, as soon as its gradient is final (reverse of {@link parameters} order).
   */
  backward(gradOut: Float32Array): void {
    const ready = this.#startBackward();
    const first = this.#firstWithParams();
    let g: Float32Array | null = gradOut;
    for (let i = this.layers.length - 1; i >= 0 && g !== null; i--) {
      g = this.layers[i].backward(g, ready, i > first);
    }
  }

  /**
   * {@link backward} that leaves the event loop free while layers compute (their `backwardAsync`,
   * whose matrix products run on the FFI thread pool): under DistributedDataParallel the allreduce of
   * each bucket then runs during the rest of backward instead of after it. Same results as `backward`.
   */
  async backwardAsync(gradOut: Float32Array): Promise<void> {
    const ready = this.#startBackward();
    const first = this.#firstWithParams();
    let g: Float32Array | null = gradOut;
    for (let i = this.layers.length - 1; i >= 0 && g !== null; i--) {
      const layer = this.layers[i];
      g = layer.backwardAsync
        ? await layer.backwardAsync(g, ready, i > first)
        : layer.backward(g, ready, i > first);
    }
  }

  #startBackward(): (p: NnParameter) => void {
    if (this.#batch < 0) {
      throw new InvalidArgumentError("Sequential: backward before forward", { op: "Sequential.backward" });
    }
    this.#batch = -1;
    const hook = this.#hook;
    return (p: NnParameter) => hook?.(p);
  }

  /** Below the first layer with parameters no input gradient is needed. */
  #firstWithParams(): number {
    const first = this.layers.findIndex((l) => l.parameters().length > 0);
    return first < 0 ? this.layers.length : first;
  }

  /** Sets every gradient to zero. */
  zeroGrad(): void {
    for (const p of this.#params) p.grad.fill(0);
  }
}
