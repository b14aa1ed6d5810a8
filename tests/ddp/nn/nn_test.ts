/**
 * @module
 * Finite-difference gradient checks of Linear, ReLU, GELU and softmax cross-entropy; the order of
 * gradient-ready hooks; deterministic initialization; the optimizers against hand-computed steps.
 */

import assert from "node:assert/strict";
import {
  AdamW,
  GELU,
  gemmBackend,
  type Layer,
  Linear,
  type Parameter,
  ReLU,
  seededRandom,
  Sequential,
  setGemmBlasEnabled,
  SGD,
  softmaxCrossEntropy,
} from "../../../ddp/nn/mod.ts";

function rand(n: number, seed: number, scale = 1): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (2 * r() - 1) * scale);
}

/** Loss = sum(out * w) for fixed weights w, so d(loss)/d(out) = w. */
function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function close(got: number, want: number, what: string, tol = 2e-2): void {
  assert.ok(
    Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)),
    `${what}: analytic ${got}, numeric ${want}`,
  );
}

/** Checks input and parameter gradients of `layer` by central differences. */
function gradCheck(layer: Layer, inF: number, batch: number, seed: number): void {
  const x = rand(batch * inF, seed);
  const outF = layer.outputSize(inF);
  const w = rand(batch * outF, seed + 1);
  for (const p of layer.parameters()) p.grad.fill(0);
  layer.forward(x, batch);
  const ready: Parameter[] = [];
  const dx = layer.backward(w, (p) => ready.push(p), true)!;
  const f = () => dot(layer.forward(x, batch), w);
  const eps = 1e-2;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    x[i] = v + eps;
    const up = f();
    x[i] = v - eps;
    const down = f();
    x[i] = v;
    close(dx[i], (up - down) / (2 * eps), `dx[${i}]`);
  }
  for (const p of layer.parameters()) {
    assert.ok(ready.includes(p), `${p.name} reported ready`);
    for (let i = 0; i < p.data.length; i++) {
      const v = p.data[i];
      p.data[i] = v + eps;
      const up = f();
      p.data[i] = v - eps;
      const down = f();
      p.data[i] = v;
      close(p.grad[i], (up - down) / (2 * eps), `${p.name}[${i}]`);
    }
  }
}

Deno.test("Linear gradients match finite differences", () => {
  gradCheck(new Linear(7, 5, { seed: 3 }), 7, 4, 10);
  gradCheck(new Linear(3, 2, { seed: 4, bias: false }), 3, 2, 20);
});

Deno.test("ReLU gradients match finite differences", () => {
  gradCheck(new ReLU(), 9, 3, 30);
});

Deno.test("GELU gradients match finite differences", () => {
  gradCheck(new GELU(), 9, 3, 40);
  const y = new GELU().forward(new Float32Array([0, 1, -1]), 1);
  close(y[0], 0, "gelu(0)", 1e-6);
  close(y[1], 0.841192, "gelu(1)", 1e-5);
  close(y[2], -0.158808, "gelu(-1)", 1e-5);
});

Deno.test("softmaxCrossEntropy: value and gradient match finite differences", () => {
  const batch = 3, classes = 4;
  const logits = rand(batch * classes, 50, 3);
  const labels = [2, 0, 3];
  const { loss, grad } = softmaxCrossEntropy(logits, labels, batch, classes);
  // Uniform logits give log(classes).
  close(
    softmaxCrossEntropy(new Float32Array(classes), [1], 1, classes).loss,
    Math.log(classes),
    "uniform",
    1e-6,
  );
  const eps = 1e-2;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    logits[i] = v + eps;
    const up = softmaxCrossEntropy(logits, labels, batch, classes).loss;
    logits[i] = v - eps;
    const down = softmaxCrossEntropy(logits, labels, batch, classes).loss;
    logits[i] = v;
    close(grad[i], (up - down) / (2 * eps), `dlogits[${i}]`, 5e-3);
  }
  assert.ok(loss > 0);
  assert.throws(() => softmaxCrossEntropy(logits, [4, 0, 0], batch, classes));
});

Deno.test("Sequential: names, whole-model gradients, hook once per parameter in reverse order", () => {
  const model = new Sequential(
    new Linear(6, 8, { seed: 1 }),
    new GELU(),
    new Linear(8, 5, { seed: 2 }),
    new ReLU(),
    new Linear(5, 3, { seed: 3 }),
  );
  const names = model.parameters().map((p) => p.name);
  assert.deepEqual(names, ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]);
  const order: string[] = [];
  model.setGradReadyHook((p) => order.push(p.name));
  const batch = 4;
  const x = rand(batch * 6, 60);
  const labels = [0, 1, 2, 1];
  for (let step = 0; step < 2; step++) {
    order.length = 0;
    model.zeroGrad();
    const { grad } = softmaxCrossEntropy(model.forward(x, batch), labels, batch, 3);
    model.backward(grad);
    assert.deepEqual(order, [...names].reverse());
  }
  // Whole-model check on a few entries of each parameter.
  const f = () => softmaxCrossEntropy(model.forward(x, batch), labels, batch, 3).loss;
  const eps = 1e-2;
  for (const p of model.parameters()) {
    for (const i of [0, Math.floor(p.data.length / 2), p.data.length - 1]) {
      const v = p.data[i];
      p.data[i] = v + eps;
      const up = f();
      p.data[i] = v - eps;
      const down = f();
      p.data[i] = v;
      close(p.grad[i], (up - down) / (2 * eps), `${p.name}[${i}]`, 5e-3);
    }
  }
  // Gradients accumulate without zeroGrad.
  const before = Float32Array.from(model.parameters()[0].grad);
  model.setGradReadyHook(null);
  model.backward(softmaxCrossEntropy(model.forward(x, batch), labels, batch, 3).grad);
  const after = model.parameters()[0].grad;
  for (let i = 0; i < after.length; i++) close(after[i], 2 * before[i], "accumulated", 1e-5);
  assert.throws(() => model.backward(new Float32Array(batch * 3)));
});

Deno.test("Linear initialization is deterministic per seed and within torch's bound", () => {
  const a = new Linear(50, 20, { seed: 7 }),
    b = new Linear(50, 20, { seed: 7 }),
    c = new Linear(50, 20, { seed: 8 });
  assert.deepEqual(a.weight.data, b.weight.data);
  assert.notDeepEqual(a.weight.data, c.weight.data);
  const bound = 1 / Math.sqrt(50);
  assert.ok(a.weight.data.every((v) => Math.abs(v) <= bound));
  assert.throws(() => a.outputSize(49));
});

function param(values: number[], grads: number[]): Parameter {
  return { name: "p", data: Float32Array.from(values), grad: Float32Array.from(grads) };
}

Deno.test("SGD with momentum and weight decay follows torch's update", () => {
  const p = param([1, -2], [0.5, 0.25]);
  const opt = new SGD({ lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
  opt.step([p]); // b = g + wd p = [0.51, 0.23]; p -= 0.1 b
  close(p.data[0], 1 - 0.051, "step 1", 1e-6);
  close(p.data[1], -2 - 0.023, "step 1", 1e-6);
  const p1 = [...p.data];
  opt.step([p]); // b = 0.9 b + g + wd p
  const b0 = 0.9 * 0.51 + 0.5 + 0.01 * p1[0];
  close(p.data[0], p1[0] - 0.1 * b0, "step 2", 1e-6);
  const plain = param([1], [2]);
  new SGD({ lr: 0.5 }).step([plain]);
  close(plain.data[0], 0, "plain", 1e-7);
});

Deno.test("AdamW follows torch's update (first step moves each weight by about lr)", () => {
  const p = param([1, -1], [0.3, -4]);
  const opt = new AdamW({ lr: 0.01, weightDecay: 0.1 });
  opt.step([p]);
  // Step 1: m/c1 = g, v/c2 = g^2, so the update is lr * sign(g), after decay by (1 - lr wd).
  close(p.data[0], 1 * (1 - 0.001) - 0.01, "w0", 1e-6);
  close(p.data[1], -1 * (1 - 0.001) + 0.01, "w1", 1e-6);
  const frozen: Parameter = { ...param([1], [1]), requiresGrad: false };
  opt.step([frozen]);
  assert.equal(frozen.data[0], 1);
});

Deno.test("SGD and AdamW: stateDict and loadStateDict carry the state to another optimizer exactly", () => {
  for (const make of [() => new SGD({ lr: 0.1, momentum: 0.9 }), () => new AdamW({ lr: 0.01 })]) {
    const two =
      () => [{ ...param([1, -1, 2], [0.3, -4, 1]), name: "w" }, { ...param([0.5], [2]), name: "b" }];
    const a = two(), b = two();
    const optA = make(), optB = make();
    optA.step(a);
    optB.step(b);
    const state = optA.stateDict(a);
    assert.ok(Object.keys(state.tensors).length > 0);
    const fresh = make();
    fresh.loadStateDict(b, structuredClone(state)); // as if sent from another process
    optA.step(a);
    fresh.step(b);
    assert.deepEqual([...b[0].data, ...b[1].data], [...a[0].data, ...a[1].data]);
    assert.deepEqual(make().stateDict(a).tensors, {}); // nothing before the first step
    assert.throws(
      () =>
        make().loadStateDict(b, {
          tensors: { "nope.exp_avg": new Float32Array(1) },
          values: { "nope.step": 1 },
        }),
      /belongs to no parameter/,
    );
  }
});

for (const blas of [true, false]) {
  Deno.test(`Sequential.backwardAsync = backward (${blas ? "OpenBLAS if present" : "JS kernel"}): same gradients and hook order`, async () => {
    setGemmBlasEnabled(blas);
    try {
      const build = () =>
        new Sequential(new Linear(7, 9, { seed: 4 }), new GELU(), new Linear(9, 4, { seed: 5 }), new ReLU());
      const a = build(), b = build();
      const order: Record<string, string[]> = { a: [], b: [] };
      a.setGradReadyHook((p) => order.a.push(p.name));
      b.setGradReadyHook((p) => order.b.push(p.name));
      const x = rand(5 * 7, 61);
      const g = rand(5 * 4, 62);
      a.forward(x, 5);
      a.backward(g);
      b.forward(x, 5);
      await b.backwardAsync(g);
      assert.deepEqual(order.b, order.a);
      a.parameters().forEach((p, k) => assert.deepEqual(b.parameters()[k].grad, p.grad, p.name));
      await assert.rejects(() => b.backwardAsync(g), /backward before forward/);
    } finally {
      setGemmBlasEnabled(true);
    }
  });
}

const noBlas = gemmBackend() !== "openblas";
if (noBlas) {
  console.log(
    "nn_test.ts: skipped: libopenblas.so.0 could not be opened (Debian: libopenblas0) or --allow-ffi is not given; the backwardAsync OpenBLAS test is ignored",
  );
}

Deno.test("Sequential.backwardAsync leaves the event loop free while a large product computes (OpenBLAS)", {
  ignore: noBlas,
}, async () => {
  const model = new Sequential(new Linear(512, 512, { seed: 6 }), new Linear(512, 512, { seed: 7 }));
  model.forward(rand(256 * 512, 63), 256);
  // Products of ~67M multiply-adds take milliseconds on the FFI thread pool; a 0 ms timer set now
  // fires before backwardAsync ends only if the event loop ran meanwhile.
  let timerFired = false;
  const timer = setTimeout(() => timerFired = true, 0);
  await model.backwardAsync(rand(256 * 512, 64));
  clearTimeout(timer);
  assert.ok(timerFired, "the event loop ran during backwardAsync");
});
