/**
 * @module
 * Subgroups between real processes: newGroup and split with their own connections (tcp) or
 * segments (shm), collectives on a subgroup running at the same time as the world's, rank
 * translation, nesting, and a disagreeing newGroup; every result checked against the reference.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";
import { choirSegments, leftoverSegments } from "../helpers/shm_segments.ts";

interface WorkerResult {
  rank: number;
  checks: number;
  failures: string[];
}

for (const [transport, sizes] of [["tcp", [1, 2, 3, 4, 5]], ["shm", [2, 3, 5]]] as const) {
  for (const worldSize of sizes) {
    Deno.test(`groups over ${transport}, world size ${worldSize}`, async () => {
      const before = choirSegments();
      const outs = await runRanks({
        script: "tests/fixtures/group_worker.ts",
        worldSize,
        env: { CHOIR_TRANSPORT: transport },
      });
      for (const out of outs) {
        assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
        const res = resultOf<WorkerResult>(out);
        assert.deepEqual(res.failures, [], `rank ${out.rank} failures`);
        assert.ok(res.checks >= 8, `rank ${out.rank} ran only ${res.checks} checks`);
      }
      assert.deepEqual(await leftoverSegments(before), [], "a /dev/shm segment was left behind");
    });
  }
}
