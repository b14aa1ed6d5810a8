/**
 * @module
 * The TensorFlow.js adapter: gradients of a linear least-squares model against the closed form,
 * accumulation, hook order, data as the source of truth, and a TF.js optimizer step.
 */

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs"; // registers TF.js's gradient functions on the same tfjs-core
import { TfjsModel } from "../../../ddp/nn/tfjs.ts";

tf.env().set("PROD", true); // no "install tfjs-node" banner
await tf.setBackend("cpu");

// x: 3 x 2, y: 3 x 1; loss = mean((x W + b - y)^2) with W 2 x 1, b 1.
const X = [[1, 2], [0.5, -1], [-2, 0.25]];
const Y = [[1], [-1], [0.5]];

function setup() {
  const w = tf.variable(tf.tensor2d([[0.3], [-0.7]]), true, `w${Math.random()}`);
  const b = tf.variable(tf.tensor1d([0.1]), true, `b${Math.random()}`);
  const x = tf.tensor2d(X), y = tf.tensor2d(Y);
  const loss = () => tf.mean(tf.square(tf.sub(tf.add(tf.matMul(x, w), b), y))) as tf.Scalar;
  return { w, b, loss, model: new TfjsModel([w, b]) };
}

/** The closed-form gradient of the loss at (w, b). */
function expected(w: number[], b: number): { dw: number[]; db: number; loss: number } {
  const n = X.length;
  const dw = [0, 0];
  let db = 0, loss = 0;
  for (let i = 0; i < n; i++) {
    const r = X[i][0] * w[0] + X[i][1] * w[1] + b - Y[i][0];
    loss += r * r / n;
    dw[0] += 2 * r * X[i][0] / n;
    dw[1] += 2 * r * X[i][1] / n;
    db += 2 * r / n;
  }
  return { dw, db, loss };
}

function close(a: number, b: number, what: string): void {
  assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

Deno.test("TfjsModel: gradients match the closed form, accumulate, hook fires last-first", () => {
  const { w, b, loss, model } = setup();
  const params = model.parameters();
  assert.deepEqual(params.map((p) => p.name), [w.name, b.name]);
  const order: string[] = [];
  model.setGradReadyHook((p) => order.push(p.name));
  const value = model.backward(loss);
  const want = expected([0.3, -0.7], 0.1);
  close(value, want.loss, "loss");
  close(params[0].grad[0], want.dw[0], "dw0");
  close(params[0].grad[1], want.dw[1], "dw1");
  close(params[1].grad[0], want.db, "db");
  assert.deepEqual(order, [b.name, w.name]);
  model.backward(loss);
  close(params[1].grad[0], 2 * want.db, "accumulated db");
  model.zeroGrad();
  assert.equal(params[1].grad[0], 0);
});

Deno.test("TfjsModel: data is the source of truth; a TF.js optimizer step is read back", () => {
  const { w, loss, model } = setup();
  const [pw, pb] = model.parameters();
  pw.data.set([1, 2]); // as DDP's broadcast or a choir optimizer would
  pb.data[0] = -0.5;
  model.backward(loss);
  const want = expected([1, 2], -0.5);
  close(pw.grad[0], want.dw[0], "dw0 at new data");
  close(pb.grad[0], want.db, "db at new data");
  model.applyOptimizer(tf.train.sgd(0.1));
  close(pw.data[0], 1 - 0.1 * want.dw[0], "w0 after sgd");
  close(pb.data[0], -0.5 - 0.1 * want.db, "b after sgd");
  close((w.dataSync() as Float32Array)[1], 2 - 0.1 * want.dw[1], "variable after sgd");
});
