/**
 * @module
 * Time per training step (forward + backward + AdamW step) of a ddp/nn MLP of about 10M parameters:
 * 784-2048-2048-2048-10 with ReLU has 10,020,874. Alone it measures compute; launched with `--ddp`
 * on N ranks it adds the gradient averaging, so the two give DDP's overhead. The step is about
 * 6 x params x batch floating-point operations.
 *
 * Run: `deno run -A bench/ddp_mlp.ts [--batch 64] [--iters 10] [--warmup 2] [--hidden 2048]
 * [--layers 3]`, or `deno task launch --nproc-per-node 2 bench/ddp_mlp.ts --ddp [--async]
 * [--bucket-cap-mb 25] [--view] [--timeline trace.json]`. `--view` sets `gradientAsBucketView`. `--async` runs `backwardAsync` (products on the FFI thread pool, so the
 * buckets' allreduces run during backward); `--timeline` writes rank 0's steps as a Chrome trace and
 * draws the last step as text. `--ft` runs the same steps through FtManager (fault tolerance: DDP over
 * the quorum's group, the commit vote per step, the optimizer step on commit) instead of plain DDP, so
 * `--ddp` against `--ft` is the bookkeeping's overhead (`SEPARATE=1 bench/ft_overhead.sh`; by default
 * that script pairs the two kinds step by step in one launch, bench/ft_ab.ts).
 */

import { readEnv } from "../config.ts";
import { initProcessGroup } from "../mod.ts";
import { AdamW, gemmBackend, type Parameter, softmaxCrossEntropy } from "../ddp/nn/mod.ts";
import { DistributedDataParallel, FtManager, Timeline } from "../ddp/mod.ts";
import { flag, mlpModel } from "./mlp_model.ts";

/** Parameters of an MLP `input-hidden x layers-classes`. */
export function mlpParameterCount(input: number, hidden: number, layers: number, classes: number): number {
  let n = 0, prev = input;
  for (let l = 0; l < layers; l++) {
    n += prev * hidden + hidden;
    prev = hidden;
  }
  return n + prev * classes + classes;
}

const batch = flag("batch", 64);
const iters = flag("iters", 10);
const warmup = flag("warmup", 2);
const hidden = flag("hidden", 2048);
const depth = flag("layers", 3);
const useFt = Deno.args.includes("--ft");
const useDdp = Deno.args.includes("--ddp") && !useFt;
const useAsync = Deno.args.includes("--async");
const traceAt = Deno.args.indexOf("--timeline");
const tracePath = traceAt >= 0 ? Deno.args[traceAt + 1] : null;
const INPUT = 784, CLASSES = 10;

const env = readEnv();
const pg = !useFt && (useDdp || env.worldSize !== undefined) ? await initProcessGroup() : null;

const model = mlpModel(INPUT, hidden, depth, CLASSES);
const params: readonly Parameter[] = model.parameters();
const count = params.reduce((s, p) => s + p.data.length, 0);
const timeline = new Timeline();
const bucketCapMb = flag("bucket-cap-mb", 25);
const gradientAsBucketView = Deno.args.includes("--view");
const ddp = useDdp && pg
  ? await DistributedDataParallel.create(model, pg, { timeline, bucketCapMb, gradientAsBucketView })
  : null;
const opt = new AdamW({ lr: 1e-4 });
const ft = useFt
  ? await FtManager.create({ model, optimizer: opt, ddp: { timeline, bucketCapMb, gradientAsBucketView } })
  : null;
const rank = pg?.rank ?? ft?.group.replicaId ?? 0;
const size = pg?.size ?? ft?.quorum?.size ?? 1;

const x = new Float32Array(batch * INPUT).map((_, i) => Math.sin(i + rank));
const y = Int32Array.from({ length: batch }, (_, i) => (i * 7 + rank) % CLASSES);

const times: number[] = [];
let lastStep = 0;
for (let it = 0; it < warmup + iters; it++) {
  if (it === warmup) timeline.clear();
  const t = performance.now();
  lastStep = timeline.now();
  if (ft) {
    // The same phases inside an all-or-nothing step; the optimizer steps on commit.
    await ft.runStep(async ({ ddp }) => {
      const { grad } = await timeline.span(
        "compute",
        "forward",
        () => softmaxCrossEntropy(model.forward(x, batch), y, batch, CLASSES),
        "f",
      );
      await timeline.span(
        "compute",
        "backward",
        () => useAsync ? model.backwardAsync(grad) : model.backward(grad),
        "B",
      );
      await timeline.span("compute", "finishBackward (wait)", () => ddp.finishBackward(), "w");
    });
    if (it >= warmup) times.push(performance.now() - t);
    continue;
  }
  model.zeroGrad();
  const { grad } = await timeline.span(
    "compute",
    "forward",
    () => softmaxCrossEntropy(model.forward(x, batch), y, batch, CLASSES),
    "f",
  );
  await timeline.span(
    "compute",
    "backward",
    () => useAsync ? model.backwardAsync(grad) : model.backward(grad),
    "B",
  );
  if (ddp) await timeline.span("compute", "finishBackward (wait)", () => ddp.finishBackward(), "w");
  await timeline.span("compute", "optimizer", () => opt.step(params), "o");
  if (it >= warmup) times.push(performance.now() - t);
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
const mean = times.reduce((s, t) => s + t, 0) / times.length;
if (rank === 0) {
  console.log(
    `mlp ${INPUT}-${Array(depth).fill(hidden).join("-")}-${CLASSES}: ${count} parameters ` +
      `(expected ${
        mlpParameterCount(INPUT, hidden, depth, CLASSES)
      }), gemm ${gemmBackend()}, batch ${batch}, ` +
      `ranks ${size}, ${
        ft
          ? `FtManager${gradientAsBucketView ? " (gradients as bucket views)" : ""}`
          : ddp
          ? `DDP${gradientAsBucketView ? " (gradients as bucket views)" : ""}`
          : "no communication"
      }, ${useAsync ? "backwardAsync" : "backward"}`,
  );
  console.log(
    `step: median ${median.toFixed(1)} ms, mean ${mean.toFixed(1)} ms over ${iters} iterations; ` +
      `${(batch / median * 1000).toFixed(0)} samples/s per rank; ` +
      `${(6 * count * batch / median / 1e6).toFixed(2)} GFLOP/s`,
  );
}
if (rank === 0 && tracePath) {
  await Deno.writeTextFile(tracePath, JSON.stringify({ traceEvents: timeline.toChromeTrace(rank) }));
  console.log(`last step (f forward, B backward, w waiting for allreduce, o optimizer; digits: buckets):`);
  console.log(timeline.render(100, lastStep));
  console.log(`Chrome trace of ${iters} steps: ${tracePath}`);
}
await pg?.destroy();
await ft?.close();
