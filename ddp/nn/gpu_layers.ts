/**
 * @module
 * The small network of ddp/nn on the GPU: {@link GpuMlp} (Linear and GELU layers whose parameters
 * and gradients live in two flat GpuTensors), softmax cross-entropy, argmax and AdamW, through cuBLAS
 * and the nn PTX kernels. Initial values equal the CPU {@link Linear}'s for the same seeds. Averaging
 * gradients across ranks is DistributedDataParallel's: GpuMlp is a {@link GpuModel}.
 */

import { InvalidArgumentError } from "../../errors.ts";
import { GpuTensor, launchNn, matmul } from "../../gpu/mod.ts";
import type { GpuGradReadyHook, GpuModel, GpuParameter } from "../model.ts";
import { Linear } from "./linear.ts";

export type { GpuParameter } from "../model.ts";

const f32 = (v: number) => ({ f32: v });
const u32 = (v: number) => ({ u32: v });
const ptr = (t: GpuTensor) => ({ u64: t.ptr });

interface LayerState {
  inF: number;
  outF: number;
  weight: GpuParameter;
  bias: GpuParameter;
  x: GpuTensor | null; // the layer input kept for backward
  pre: GpuTensor | null; // pre-activation kept for GELU backward
  y: GpuTensor | null;
}

/** Options of {@link GpuMlp}. */
export interface GpuMlpOptions {
  /** Device ordinal (default 0). */
  device?: number;
  /** Seed of layer `i` is `seeds[i]` (default `i + 1`), as `new Linear(.., { seed })` on the CPU. */
  seeds?: readonly number[];
}

/**
 * A multilayer perceptron `Linear -> GELU -> ... -> Linear` on one GPU, for `batch x sizes[0]` f32
 * inputs. Every parameter (named `<layer>.weight` / `<layer>.bias` as the CPU Sequential names them)
 * is a view into one flat value buffer and one flat gradient buffer, so DistributedDataParallel with
 * `gradientAsBucketView` averages views of the flat gradient, with no copies. Backward reports each
 * layer's gradients as soon as their kernels are queued.
 */
export class GpuMlp implements GpuModel {
  /** Device ordinal. */
  readonly device: number;
  /** Layer widths, input first. */
  readonly sizes: readonly number[];
  /** All parameter values, concatenated (forward order). */
  readonly flatData: GpuTensor;
  /** All gradients, in the same layout. */
  readonly flatGrad: GpuTensor;
  readonly #layers: LayerState[] = [];
  readonly #params: GpuParameter[] = [];
  #hook: GpuGradReadyHook | null = null;

  /** Builds the layers, initialised as the CPU `Linear` with the same seeds, and uploads them. */
  constructor(sizes: readonly number[], opts: GpuMlpOptions = {}) {
    if (sizes.length < 2) throw new InvalidArgumentError("GpuMlp needs at least 2 sizes", { op: "GpuMlp" });
    this.device = opts.device ?? 0;
    this.sizes = [...sizes];
    const cpu = sizes.slice(1).map((out, i) => new Linear(sizes[i], out, { seed: opts.seeds?.[i] ?? i + 1 }));
    const total = cpu.reduce((a, l) => a + l.weight.data.length + l.bias!.data.length, 0);
    const host = new Float32Array(total);
    this.flatData = GpuTensor.empty("f32", total, this.device);
    this.flatGrad = GpuTensor.zeros("f32", total, this.device);
    let at = 0;
    cpu.forEach((l, i) => {
      const w = l.weight.data, b = l.bias!.data;
      host.set(w, at);
      host.set(b, at + w.length);
      const view = (name: string, off: number, n: number, shape: number[]): GpuParameter => ({
        name: `${2 * i}.${name}`,
        data: this.flatData.view(off, n, shape),
        grad: this.flatGrad.view(off, n, shape),
      });
      const weight = view("weight", at, w.length, [l.outFeatures, l.inFeatures]);
      const bias = view("bias", at + w.length, b.length, [b.length]);
      this.#params.push(weight, bias);
      this.#layers.push({
        inF: l.inFeatures,
        outF: l.outFeatures,
        weight,
        bias,
        x: null,
        pre: null,
        y: null,
      });
      at += w.length + b.length;
    });
    this.flatData.copyFromHost(host);
  }

  /** Parameters in forward order. */
  parameters(): readonly GpuParameter[] {
    return this.#params;
  }

  /** Installs the hook backward calls per layer's weight and bias once their gradients are queued. */
  setGradReadyHook(hook: GpuGradReadyHook | null): void {
    this.#hook = hook;
  }

  /** Sets every gradient to zero. */
  zeroGrad(): void {
    this.flatGrad.zero();
  }

  /**
   * The logits (`batch x sizes[last]`) of `x` (`batch x sizes[0]`). Keeps what backward needs; the
   * returned tensor belongs to the model (valid until the next forward).
   */
  forward(x: GpuTensor, batch: number): GpuTensor {
    if (x.length < batch * this.sizes[0]) {
      throw new InvalidArgumentError(`input has ${x.length} values, need ${batch * this.sizes[0]}`, {
        op: "GpuMlp.forward",
      });
    }
    let h = x.view(0, batch * this.sizes[0], [batch, this.sizes[0]]);
    this.#layers.forEach((l, i) => {
      this.#release(l);
      l.x = h;
      const y = matmul(h, l.weight.data, { transB: true });
      launchNn(
        "choir_bias_add_f32",
        batch * l.outF,
        [ptr(y), ptr(l.bias.data), u32(batch), u32(l.outF)],
        this.device,
      );
      if (i < this.#layers.length - 1) {
        l.pre = y;
        l.y = GpuTensor.empty("f32", [batch, l.outF], this.device);
        launchNn("choir_gelu_f32", y.length, [ptr(l.y), ptr(y), { u64: BigInt(y.length) }], this.device);
      } else l.y = y;
      h = l.y;
    });
    return h;
  }

  /** Accumulates every gradient from `gradOut`, the gradient of the loss at the logits. */
  backward(gradOut: GpuTensor, batch: number): void {
    let g = gradOut;
    const owned: GpuTensor[] = [];
    for (let i = this.#layers.length - 1; i >= 0; i--) {
      const l = this.#layers[i];
      if (!l.x) throw new InvalidArgumentError("backward before forward", { op: "GpuMlp.backward" });
      if (l.pre) {
        // Through GELU: g = g * GELU'(pre).
        const dpre = GpuTensor.empty("f32", [batch, l.outF], this.device);
        launchNn("choir_gelu_backward_f32", dpre.length, [ptr(dpre), ptr(g), ptr(l.pre), {
          u64: BigInt(dpre.length),
        }], this.device);
        owned.push(dpre);
        g = dpre;
      }
      launchNn(
        "choir_bias_grad_f32",
        l.outF,
        [ptr(l.bias.grad), ptr(g), u32(batch), u32(l.outF)],
        this.device,
      );
      matmul(g, l.x, { transA: true, beta: 1, out: l.weight.grad }); // dW += g^T x
      this.#hook?.(l.weight);
      this.#hook?.(l.bias);
      if (i > 0) {
        const dx = matmul(g, l.weight.data); // dx = g W
        owned.push(dx);
        g = dx;
      }
    }
    for (const t of owned) t.free(); // frees are ordered after the queued kernels on the default stream
  }

  #release(l: LayerState): void {
    if (l.pre) l.pre.free();
    if (l.y && l.y !== l.pre) l.y.free();
    l.pre = l.y = null;
  }

  /** Frees the model's device memory. */
  free(): void {
    this.#layers.forEach((l) => this.#release(l));
    this.flatData.free();
    this.flatGrad.free();
  }
}

/** Mean softmax cross-entropy of `batch x classes` logits against `labels` (i32 on the device). */
export function softmaxCrossEntropyGpu(
  logits: GpuTensor,
  labels: GpuTensor,
  batch: number,
  classes: number,
): { loss: number; grad: GpuTensor } {
  const grad = GpuTensor.empty("f32", [batch, classes], logits.device);
  using losses = GpuTensor.empty("f32", batch, logits.device);
  launchNn(
    "choir_softmax_xent_f32",
    batch,
    [ptr(logits), ptr(labels), ptr(grad), ptr(losses), u32(batch), u32(classes)],
    logits.device,
  );
  const l = losses.toHost() as Float32Array;
  let sum = 0;
  for (const v of l) sum += v;
  return { loss: sum / batch, grad };
}

/** The index of the largest logit of each row, copied to the host. */
export function argmaxGpu(logits: GpuTensor, batch: number, classes: number): Int32Array {
  using out = GpuTensor.empty("i32", batch, logits.device);
  launchNn("choir_argmax_rows_f32", batch, [ptr(logits), ptr(out), u32(batch), u32(classes)], logits.device);
  return out.toHost() as Int32Array;
}

/** Options of {@link GpuAdamW} (the CPU AdamW's). */
export interface GpuAdamWOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Moment decay rates (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Denominator epsilon (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 0.01). */
  weightDecay?: number;
}

/** AdamW over a flat f32 value/gradient pair on the GPU, one kernel a step (the CPU AdamW's math). */
export class GpuAdamW {
  /** Learning rate (may change between steps). */
  lr: number;
  /** Moment decay rates. */
  readonly betas: readonly [number, number];
  /** Denominator epsilon. */
  readonly eps: number;
  /** Decoupled weight decay. */
  readonly weightDecay: number;
  #m: GpuTensor | null = null;
  #v: GpuTensor | null = null;
  #t = 0;

  /** An optimizer with torch's AdamW defaults unless given. */
  constructor(opts: GpuAdamWOptions = {}) {
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  /** One step on `data` from `grad` (flat f32 tensors of one length and device). */
  step(data: GpuTensor, grad: GpuTensor): void {
    if (data.length !== grad.length || data.dtype !== "f32" || grad.dtype !== "f32") {
      throw new InvalidArgumentError(`GpuAdamW: ${data} and ${grad} differ`, { op: "GpuAdamW.step" });
    }
    this.#m ??= GpuTensor.zeros("f32", data.length, data.device);
    this.#v ??= GpuTensor.zeros("f32", data.length, data.device);
    this.#t++;
    const [b1, b2] = this.betas;
    launchNn("choir_adamw_f32", data.length, [
      ptr(data),
      ptr(grad),
      ptr(this.#m),
      ptr(this.#v),
      { u64: BigInt(data.length) },
      f32(this.lr),
      f32(b1),
      f32(b2),
      f32(this.eps),
      f32(1 - this.lr * this.weightDecay),
      f32(1 - b1 ** this.#t),
      f32(1 - b2 ** this.#t),
    ], data.device);
  }

  /** Frees the moment buffers. */
  free(): void {
    this.#m?.free();
    this.#v?.free();
    this.#m = this.#v = null;
  }
}
