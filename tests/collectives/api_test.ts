/**
 * @module
 * The torch.distributed-complete API (gather, scatter, list forms, allToAll, object collectives,
 * async Works, isend/irecv/batchIsendIrecv, argument errors) over tcp and shm between real
 * processes, world sizes 1 to 5, every result checked against tests/collectives/reference.ts.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";
import { choirSegments, leftoverSegments } from "../helpers/shm_segments.ts";

interface WorkerResult {
  rank: number;
  checks: number;
  failures: string[];
}

for (const transport of ["tcp", "shm"]) {
  for (const worldSize of [1, 2, 3, 4, 5]) {
    Deno.test(`api over ${transport}, world size ${worldSize}`, async () => {
      const before = choirSegments();
      const outs = await runRanks({
        script: "tests/fixtures/api_worker.ts",
        worldSize,
        // Lengths 0, 1 and primes; the big case is 1 MiB of f32 (and 2 MiB of f64), in 64 KiB chunks.
        args: [JSON.stringify({ lengths: [0, 1, 7, 1009], big: 262_147, chunkBytes: 65_536 })],
        env: { CHOIR_TRANSPORT: transport },
      });
      for (const out of outs) {
        assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
        const res = resultOf<WorkerResult>(out);
        assert.deepEqual(res.failures, [], `rank ${out.rank} failures`);
        assert.ok(res.checks > 60, `rank ${out.rank} ran only ${res.checks} checks`);
      }
      assert.deepEqual(await leftoverSegments(before), [], "a /dev/shm segment was left behind");
    });
  }
}
