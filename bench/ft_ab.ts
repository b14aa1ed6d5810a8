/**
 * @module
 * Fault tolerance's steady-state overhead, paired step by step within one launch: each rank builds the
 * ~10M-parameter MLP of bench/ddp_mlp.ts twice, trains one copy with plain DDP over the world group and
 * the other through FtManager (DDP over the quorum's group, the commit vote, the optimizer step on
 * commit), and runs their steps alternately, the order within each pair alternating. Both kinds then
 * share the processes, the cores, the JIT's code and the machine's load of the same seconds, which
 * separate launches do not (on the 2-core test machine a launch's step time varies by +-20%, far more
 * than the 2% looked for). No failure is injected. Prints each kind's median step and the median of the
 * per-pair ratios; bench/ft_overhead.sh runs it once per round.
 *
 * Run: `deno task launch --nproc-per-node 2 bench/ft_ab.ts [--iters 10] [--warmup 2] [--batch 64]
 * [--hidden 2048] [--layers 3] [--ft-first]`.
 */

import { initProcessGroup } from "../mod.ts";
import { AdamW, type Sequential, softmaxCrossEntropy } from "../ddp/nn/mod.ts";
import { DistributedDataParallel, FtManager } from "../ddp/mod.ts";
import { flag, mlpModel } from "./mlp_model.ts";

const batch = flag("batch", 64);
const iters = flag("iters", 10);
const warmup = flag("warmup", 2);
const hidden = flag("hidden", 2048);
const depth = flag("layers", 3);
const ftFirst = Deno.args.includes("--ft-first");
const INPUT = 784, CLASSES = 10;

/** The MLP of bench/ddp_mlp.ts (the same seeds). */
function mlp(): Sequential {
  return mlpModel(INPUT, hidden, depth, CLASSES);
}

const pg = await initProcessGroup();
const rank = pg.rank;
const plainModel = mlp();
const plainOpt = new AdamW({ lr: 1e-4 });
const ddp = await DistributedDataParallel.create(plainModel, pg);
const ftModel = mlp();
const ft = await FtManager.create({ model: ftModel, optimizer: new AdamW({ lr: 1e-4 }) });

const x = new Float32Array(batch * INPUT).map((_, i) => Math.sin(i + rank));
const y = Int32Array.from({ length: batch }, (_, i) => (i * 7 + rank) % CLASSES);

/** One plain DDP step, as bench/ddp_mlp.ts `--ddp` runs it. */
async function plainStep(): Promise<void> {
  plainModel.zeroGrad();
  const { grad } = softmaxCrossEntropy(plainModel.forward(x, batch), y, batch, CLASSES);
  plainModel.backward(grad);
  await ddp.finishBackward();
  plainOpt.step(plainModel.parameters());
}

/** The same step through FtManager, as bench/ddp_mlp.ts `--ft` runs it. */
async function ftStep(): Promise<void> {
  await ft.runStep(async ({ ddp }) => {
    const { grad } = softmaxCrossEntropy(ftModel.forward(x, batch), y, batch, CLASSES);
    ftModel.backward(grad);
    await ddp.finishBackward();
  });
}

const times = { ddp: [] as number[], ft: [] as number[] };
for (let it = 0; it < warmup + iters; it++) {
  const order = (it % 2 === 0) !== ftFirst ? (["ddp", "ft"] as const) : (["ft", "ddp"] as const);
  for (const kind of order) {
    const t = performance.now();
    await (kind === "ddp" ? plainStep() : ftStep());
    if (it >= warmup) times[kind].push(performance.now() - t);
  }
}
const median = (a: readonly number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
if (rank === 0) {
  const ratios = times.ft.map((t, i) => t / times.ddp[i] - 1);
  const pct = (r: number) => `${r >= 0 ? "+" : ""}${(100 * r).toFixed(2)}%`;
  console.log(
    `mlp ${INPUT}-${Array(depth).fill(hidden).join("-")}-${CLASSES}, batch ${batch}, ranks ${pg.size}: ` +
      `plain DDP and FtManager steps alternating (${ftFirst ? "FtManager" : "DDP"} first)`,
  );
  console.log(`ddp step: median ${median(times.ddp).toFixed(1)} ms over ${iters} iterations`);
  console.log(`ft step: median ${median(times.ft).toFixed(1)} ms over ${iters} iterations`);
  console.log(
    `paired overhead: median ${pct(median(ratios))} [${pct(Math.min(...ratios))} .. ${
      pct(Math.max(...ratios))
    }] over ${iters} pairs`,
  );
}
await ft.close();
ddp.detach();
await pg.destroy();
