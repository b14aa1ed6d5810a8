/**
 * @module
 * The hang report end to end: rank 1 of 3 skips an allreduce; the others time out, and the lowest
 * waiting rank prints a report naming the op, the ready ranks and the missing rank, over tcp and shm.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";

for (const transport of ["tcp", "shm"]) {
  Deno.test(`hang report (${transport}): a rank that skips an allreduce is named, with the op`, async () => {
    const outs = await runRanks({
      script: "tests/fixtures/hang_worker.ts",
      worldSize: 3,
      args: ["1"],
      env: { CHOIR_TRANSPORT: transport },
      deadlineMs: 30_000,
    });
    for (const r of [0, 2]) {
      const res = resultOf<{ name: string; message: string }>(outs[r]);
      assert.equal(res.name, "CollectiveTimeoutError", res.message);
    }
    const report = outs[0].stderr;
    assert.match(report, /allReduce #1 \(f32 x 4\) stalled/, report);
    assert.match(report, /ready ranks 0, 2/, report);
    assert.match(report, /missing ranks 1 \(its last: allReduce #0 done\)/, report);
    assert.doesNotMatch(outs[2].stderr, /stalled/, "only one rank prints the report");
  });
}
