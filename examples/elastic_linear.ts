/**
 * @module
 * Elastic training: examples/ddp_linear.ts's linear regression, committing its state every step with
 * ElasticState, so that the launcher can restart failed workers and they resume from the last commit.
 * Run with `deno task launch --nproc-per-node 2 --max-restarts 1 examples/elastic_linear.ts [STEPS]`;
 * rank 0 ends with a `RESULT {...}` line (final parameters, exact).
 */

import { initProcessGroup } from "../mod.ts";
import {
  DistributedDataParallel,
  DistributedSampler,
  type GradReadyHook,
  type Model,
  type Parameter,
} from "../ddp/mod.ts";
import { ElasticState } from "../launch/mod.ts";

const DIM = 4, SAMPLES = 480, BATCH = 8, LR = 0.05;
const STEPS = Number(Deno.args[0] ?? 300);
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
    this.#hook?.(this.b);
    this.#hook?.(this.w);
    return loss;
  }
}

const pg = await initProcessGroup();
console.log(`rank ${pg.rank}: pid ${Deno.pid}`);
const model = new Linear();
const state = await ElasticState.open({ tensors: { w: model.w.data, b: model.b.data }, values: { step: 0 } });
const resumed = await state.restore();
const from = state.values.step as number;
if (resumed) console.log(`rank ${pg.rank}: resuming after step ${from} (commit from ${state.where})`);
const ddp = await DistributedDataParallel.create(model, pg);
const sampler = new DistributedSampler(SAMPLES, { numReplicas: pg.size, rank: pg.rank, seed: 42 });
const perEpoch = Math.ceil(sampler.length / BATCH);
let loss = 0;
for (let step = from; step < STEPS; step++) {
  // Which batch a step takes depends on the step alone, so a resumed run replays the same data.
  sampler.setEpoch(Math.floor(step / perEpoch));
  const at = (step % perEpoch) * BATCH;
  ddp.zeroGrad();
  loss = model.forwardBackward(sampler.indices().slice(at, at + BATCH));
  await ddp.finishBackward();
  for (const p of model.parameters()) for (let k = 0; k < p.data.length; k++) p.data[k] -= LR * p.grad[k];
  state.values.step = step + 1;
  await state.commit();
  if ((step + 1) % 20 === 0) console.log(`rank ${pg.rank}: step ${step + 1} loss ${loss.toFixed(5)}`);
}
if (pg.rank === 0) {
  const result = {
    w: Array.from(model.w.data),
    b: model.b.data[0],
    steps: STEPS,
    resumedFrom: resumed ? from : null,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}
await state.close();
await pg.destroy();
