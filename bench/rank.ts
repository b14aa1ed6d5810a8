/**
 * @module
 * The program each benchmark rank runs (started by bench/main.ts): joins the job from env://,
 * measures every op and size it was given, and rank 0 prints one JSON line per row for the parent.
 * Argument: JSON `{ ops, sizes, budgetS, minIters, maxIters }`.
 */

import { initProcessGroup } from "../collectives/mod.ts";
import { type BenchOp, measure } from "./measure.ts";

const cfg = JSON.parse(Deno.args[0]) as {
  ops: BenchOp[];
  sizes: number[];
  budgetS: number;
  minIters: number;
  maxIters: number;
  alloc?: boolean;
};
const pg = await initProcessGroup();
// Warm the JIT and the connections before the first row, which is otherwise measured cold.
const warm = new Float32Array(256);
for (let i = 0; i < 300; i++) {
  await pg.allReduce(warm);
  await pg.broadcast(warm);
  await pg.barrier();
}
for (const op of cfg.ops) {
  for (const bytes of op === "barrier" ? [0] : cfg.sizes) {
    const row = await measure(pg, op, bytes, cfg);
    if (pg.rank === 0) console.log(`ROW ${JSON.stringify(row)}`);
  }
}
await pg.destroy();
