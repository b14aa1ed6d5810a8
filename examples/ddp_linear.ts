/**
 * @module
 * DistributedDataParallel end to end: a linear regression `y = w . x + b`, written by hand against
 * the `Model` interface, trained on a dataset split by DistributedSampler. Every rank ends with the
 * same weights, close to the true ones. Run with `deno task launch --nproc-per-node 2 examples/ddp_linear.ts`.
 */

import { initProcessGroup } from "../mod.ts";
import {
  DistributedDataParallel,
  DistributedSampler,
  type GradReadyHook,
  type Model,
  type Parameter,
} from "../ddp/mod.ts";

const DIM = 4, SAMPLES = 256, BATCH = 16, EPOCHS = 5, LR = 0.1;
const TRUE_W = [1, -2, 0.5, 3], TRUE_B = 0.25;
const xOf = (i: number) => Array.from({ length: DIM }, (_, k) => Math.sin(i * (k + 1) * 0.37));
const yOf = (i: number) => xOf(i).reduce((s, x, k) => s + x * TRUE_W[k], TRUE_B);

/** The model: parameters with gradients, and backward reports each finished gradient. */
class Linear implements Model {
  w: Parameter = { name: "w", data: new Float32Array(DIM), grad: new Float32Array(DIM), shape: [1, DIM] };
  b: Parameter = { name: "b", data: new Float32Array(1), grad: new Float32Array(1) };
  #hook: GradReadyHook | null = null;
  parameters() {
    return [this.w, this.b];
  }
  setGradReadyHook(hook: GradReadyHook | null) {
    this.#hook = hook;
  }
  /** Forward and backward of the mean squared error over `batch`; returns the loss. */
  forwardBackward(batch: number[]): number {
    let loss = 0;
    for (const i of batch) {
      const x = xOf(i);
      const err = x.reduce((s, v, k) => s + v * this.w.data[k], this.b.data[0]) - yOf(i);
      loss += err * err / batch.length;
      for (let k = 0; k < DIM; k++) this.w.grad[k] += 2 * err * x[k] / batch.length;
      this.b.grad[0] += 2 * err / batch.length;
    }
    this.#hook?.(this.b); // gradients become final here, last layer first
    this.#hook?.(this.w);
    return loss;
  }
}

const pg = await initProcessGroup();
const model = new Linear();
const ddp = await DistributedDataParallel.create(model, pg);
const sampler = new DistributedSampler(SAMPLES, { numReplicas: pg.size, rank: pg.rank, seed: 42 });
let loss = 0;
for (let epoch = 0; epoch < EPOCHS; epoch++) {
  sampler.setEpoch(epoch);
  const mine = sampler.indices();
  for (let at = 0; at < mine.length; at += BATCH) {
    ddp.zeroGrad();
    loss = model.forwardBackward(mine.slice(at, at + BATCH));
    await ddp.finishBackward(); // gradients averaged over the ranks
    for (const p of model.parameters()) for (let k = 0; k < p.data.length; k++) p.data[k] -= LR * p.grad[k];
  }
}
await ddp.join();
const w = Array.from(model.w.data, (v) => v.toFixed(2)).join(", ");
console.log(`rank ${pg.rank}: loss ${loss.toFixed(4)}, w = [${w}], b = ${model.b.data[0].toFixed(2)}`);
await pg.destroy();
