/**
 * @module
 * What each collective would run, and why: rank 0 prints `pg.explain()` for a few sizes (the
 * algorithm, its chunk size, its predicted time and the runner-up). Nothing is sent. Run with
 * `deno task launch --nproc-per-node 4 examples/explain.ts`; set CHOIR_TRANSPORT=tcp to see the
 * channel algorithms, CHOIR_ALGO or CHOIR_DETERMINISTIC=1 to see what they change.
 */

import { initProcessGroup, type PlanOp } from "../mod.ts";

const SIZES = [8, 64 << 10, 1 << 20, 64 << 20];
const OPS: PlanOp[] = ["allReduce", "broadcast", "reduce"];

const pg = await initProcessGroup();
if (pg.rank === 0) {
  console.log(`${pg.size} ranks over ${pg.backend}`);
  console.log("op          bytes      algorithm           chunk  predicted  runner-up");
  for (const op of OPS) {
    for (const bytes of SIZES) {
      const e = pg.explain(op, bytes);
      const next = e.candidates.find((c) => c.algorithm !== e.algorithm);
      console.log(
        [
          op.padEnd(10),
          String(bytes).padStart(9),
          e.algorithm.padEnd(18),
          String(e.chunkBytes).padStart(9),
          `${e.predictedUs.toFixed(1)} us`.padStart(12),
          next ? `${next.algorithm} ${next.predictedUs.toFixed(1)} us` : "-",
        ].join("  "),
      );
    }
  }
  console.log(`\nallReduce of 1 MiB in full:\n${JSON.stringify(pg.explain("allReduce", 1 << 20), null, 2)}`);
}
await pg.barrier();
await pg.destroy();
