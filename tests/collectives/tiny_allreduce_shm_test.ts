/**
 * @module
 * The tiny same-host allReduce (the call-slot fast path) between real processes on 2 and 4 ranks:
 * values of every dtype and op against the independent reference at sizes around its thresholds, the
 * same bytes on every rank, and a call that differs on one rank (length, dtype, op, a size on either
 * side of the slot's end) failing with CollectiveMismatchError naming the rank, the op and the field.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";

const script = "tests/fixtures/tiny_allreduce_worker.ts";
const env = { CHOIR_TRANSPORT: "shm" };

for (const worldSize of [2, 4]) {
  Deno.test(`tiny allReduce over shm, ${worldSize} ranks: every dtype and op, sizes around the thresholds`, async () => {
    const outs = await runRanks({ script, worldSize, env });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      const res = resultOf<{ checks: number; failures: string[] }>(out);
      assert.deepEqual(res.failures, [], `rank ${out.rank} failures`);
      assert.ok(res.checks > 700, `only ${res.checks} checks`);
    }
  });
}

/** Each scenario and the field its message must name. */
const MISMATCHES = [
  ["mismatch-count", 2, /count: expected 102[34], peer sent 102[34]/],
  ["mismatch-count-edge", 2, /count: expected 41(28|32), peer sent 41(28|32)/],
  ["mismatch-dtype", 2, /dtype: expected (f32|i32), peer sent (i32|f32)/],
  ["mismatch-op", 2, /op: expected allReduce\/(sum|max), peer sent allReduce\/(max|sum)/],
  ["mismatch-count", 4, /count: expected 102[34], peer sent 102[34]/],
] as const;

for (const [scenario, worldSize, field] of MISMATCHES) {
  Deno.test(`tiny allReduce over shm, ${worldSize} ranks, ${scenario}: CollectiveMismatchError on every rank`, async () => {
    const outs = await runRanks({ script, worldSize, args: [scenario], env, deadlineMs: 30_000 });
    for (const out of outs) {
      const res = resultOf<{ name: string; message: string; rank: number; op: string; ms: number }>(out);
      assert.equal(res.name, "CollectiveMismatchError", `rank ${out.rank}: ${res.message}`);
      assert.match(res.message, field, `rank ${out.rank}`);
      assert.equal(res.rank, out.rank, `rank ${out.rank}: the error names rank ${res.rank}`);
      assert.equal(res.op, "allReduce");
      assert.ok(res.ms < 4000 + 2000, `rank ${out.rank} took ${res.ms} ms`);
    }
  });
}
