/**
 * @module
 * Fault-tolerant training (docs/fault_tolerance.md): a small MLP classifies synthetic points with the
 * natural data-parallel loop (sampler, DDP, SGD with momentum) under FtManager. Replicas may die at any
 * step: the others go on in place, and the launcher's replacement joins with the state of a live peer.
 * `--crash-at STEP` makes replica 1 kill itself (SIGKILL) at that step to show it.
 *
 * Run: `deno task launch --nproc-per-node 4 --restart-failed 2 examples/ft_mlp.ts [--steps 200]
 * [--crash-at 50]`; each replica prints the quorums it trains in, and the lowest one a `RESULT {...}` line.
 */

import { DistributedSampler, FtManager } from "../ddp/mod.ts";
import { Linear, ReLU, Sequential, SGD, softmaxCrossEntropy } from "../ddp/nn/mod.ts";

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}

const STEPS = flag("steps", 200), CRASH_AT = flag("crash-at", -1);
const SAMPLES = 2048, DIM = 2, CLASSES = 4, BATCH = 16;

/** Point i: a position in the plane and its quadrant as the label. */
function batchOf(indices: readonly number[]): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(indices.length * DIM), y = new Int32Array(indices.length);
  indices.forEach((s, r) => {
    const a = Math.sin(s * 12.9898) * 43758.5453, b = Math.sin(s * 78.233) * 12543.1234;
    const px = 2 * (a - Math.floor(a)) - 1, py = 2 * (b - Math.floor(b)) - 1;
    x[r * DIM] = px;
    x[r * DIM + 1] = py;
    y[r] = (px > 0 ? 1 : 0) + (py > 0 ? 2 : 0);
  });
  return { x, y };
}

const model = new Sequential(
  new Linear(DIM, 32, { seed: 1 }),
  new ReLU(),
  new Linear(32, CLASSES, { seed: 2 }),
);
// The manager shards the sampler for each quorum (DistributedSampler.reshard), from the next step on.
const sampler = new DistributedSampler(SAMPLES, { numReplicas: 1, rank: 0, seed: 7 });
const ft = await FtManager.create({
  model,
  optimizer: new SGD({ lr: 0.1, momentum: 0.9 }),
  sampler,
  batchSize: BATCH,
  group: { log: (m) => console.log(m) },
});
const me = ft.group.replicaId;
const founder = ft.quorum?.id === 0;
let loss = 0;
let lastQuorum = -1;
while (ft.step < STEPS && !ft.finished) {
  if (founder && me === 1 && ft.step === CRASH_AT) Deno.kill(Deno.pid, "SIGKILL"); // the demonstration
  const r = await ft.runStep(async ({ ddp, indices }) => {
    const { x, y } = batchOf(indices);
    const out = softmaxCrossEntropy(model.forward(x, indices.length), y, indices.length, CLASSES);
    loss = out.loss;
    await model.backwardAsync(out.grad);
    await ddp.finishBackward(); // gradients averaged over the quorum's members
  });
  if (r.quorum !== lastQuorum) {
    lastQuorum = r.quorum;
    console.log(`replica ${me}: step ${r.step} in quorum ${r.quorum} with replicas ${r.members.join(", ")}`);
  }
  if ((r.step + 1) % 50 === 0) {
    console.log(`replica ${me}: step ${r.step + 1} epoch ${r.epoch} loss ${loss.toFixed(4)}`);
  }
}
if (!ft.finished && ft.quorum?.rank === 0) {
  // Accuracy on the whole dataset: the same on every replica, whose parameters are equal.
  const all = Array.from({ length: SAMPLES }, (_, i) => i);
  const { x, y } = batchOf(all);
  const logits = model.forward(x, SAMPLES);
  let right = 0;
  for (let i = 0; i < SAMPLES; i++) {
    const row = logits.subarray(i * CLASSES, (i + 1) * CLASSES);
    if (row.indexOf(Math.max(...row)) === y[i]) right++;
  }
  console.log(
    `RESULT ${JSON.stringify({ steps: ft.step, accuracy: right / SAMPLES, members: ft.quorum.members })}`,
  );
}
await ft.close();
