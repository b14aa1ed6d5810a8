/**
 * @module
 * Every collective over real TCP between real processes, world sizes 1 to 5, checked on every rank
 * against the independent reference (tests/collectives/reference.ts).
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";

interface WorkerResult {
  rank: number;
  checks: number;
  failures: string[];
}

for (
  const [worldSize, checksum] of [[1, false], [2, false], [3, false], [3, true], [4, false], [
    5,
    false,
  ]] as const
) {
  Deno.test(`collectives over tcp, world size ${worldSize}${checksum ? ", CRC32C on every frame" : ""}`, async () => {
    const outs = await runRanks({
      script: "tests/fixtures/collective_worker.ts",
      worldSize,
      // Small chunks so that the large case really pipelines across many chunks.
      args: [JSON.stringify({ lengths: [0, 1, 7, 1001], big: 30_011, chunkBytes: 4096 })],
      env: { CHOIR_TRANSPORT: "tcp", ...(checksum ? { CHOIR_CHECKSUM: "1" } : {}) },
    });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      const res = resultOf<WorkerResult>(out);
      assert.deepEqual(res.failures, [], `rank ${out.rank} failures`);
      assert.ok(res.checks > 300, `rank ${out.rank} ran only ${res.checks} checks`);
    }
  });
}

// Ranks split into "hosts" by CHOIR_HOST_ID: large allreduces take the hierarchical path (local
// reduce-scatter, cross-host allreduce, local allgather) when hosts hold equal numbers of ranks.
for (const [worldSize, perHost] of [[4, 2], [6, 3], [5, 3]] as const) {
  Deno.test(`collectives over tcp, ${worldSize} ranks on hosts of ${perHost}`, async () => {
    const outs = await runRanks({
      script: "tests/fixtures/collective_worker.ts",
      worldSize,
      args: [JSON.stringify({ lengths: [0, 7], big: 30_011, chunkBytes: 4096, dtypes: ["f32", "i64"] })],
      env: (rank): Record<string, string> => ({
        CHOIR_TRANSPORT: "tcp",
        CHOIR_HOST_ID: `host-${Math.floor(rank / perHost)}`,
      }),
    });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      assert.deepEqual(resultOf<WorkerResult>(out).failures, [], `rank ${out.rank} failures`);
    }
  });
}
