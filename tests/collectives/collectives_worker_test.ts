/**
 * @module
 * Every collective between Worker ranks of this process (world sizes 1 to 8), over the Worker
 * transport and its shared arena: the same fixture as the process tests, each result checked
 * against the independent reference; and `pg.alloc` tensors in one shared memory, reduced in place.
 */

import assert from "node:assert/strict";
import { spawnWorkers } from "../../transports/worker/spawn.ts";

interface WorkerResult {
  rank: number;
  checks: number;
  failures: string[];
}

const fixture = new URL("../fixtures/collective_worker.ts", import.meta.url);

for (const worldSize of [1, 2, 3, 4, 5, 6, 7, 8]) {
  Deno.test(`collectives over Worker ranks, world size ${worldSize}`, async () => {
    // Every dtype up to 2 ranks; beyond, fewer dtypes and lengths (more ranks than cores is slow),
    // still with lengths past the call slot so the arena's chunk pipeline runs.
    const small = worldSize > 2;
    const group = await spawnWorkers(worldSize, fixture, {
      data: {
        lengths: small ? [0, 7] : [0, 1, 7, 1001],
        big: small ? 5003 : 30_011,
        chunkBytes: 4096,
        dtypes: small ? ["f32", "i64"] : undefined,
        ops: small ? ["sum", "max", "avg"] : undefined,
      },
      timeoutMs: 120_000,
    });
    try {
      const results = (await group.results(120_000)) as WorkerResult[];
      assert.equal(results.length, worldSize);
      for (const [rank, res] of results.entries()) {
        assert.equal(res.rank, rank);
        assert.deepEqual(res.failures, [], `rank ${rank} failures`);
        assert.ok(res.checks > 50, `rank ${rank} ran ${res.checks} checks`);
      }
    } finally {
      await group.close();
    }
  });
}

for (const worldSize of [2, 3]) {
  Deno.test(`pg.alloc on Worker ranks: one shared memory, allreduced in place, world size ${worldSize}`, async () => {
    const group = await spawnWorkers(worldSize, new URL("../fixtures/alloc_worker.ts", import.meta.url));
    try {
      for (const res of (await group.results(120_000)) as WorkerResult[]) {
        assert.deepEqual(res.failures, [], `rank ${res.rank} failures`);
        assert.equal(res.checks, 20);
      }
    } finally {
      await group.close();
    }
  });
}

for (const worldSize of [2, 3, 5]) {
  Deno.test(`subgroups of Worker ranks (newGroup, split, nesting), world size ${worldSize}`, async () => {
    const group = await spawnWorkers(worldSize, new URL("../fixtures/group_worker.ts", import.meta.url));
    try {
      for (const res of (await group.results(120_000)) as WorkerResult[]) {
        assert.deepEqual(res.failures, [], `rank ${res.rank} failures`);
        assert.ok(res.checks >= 8, `rank ${res.rank} ran only ${res.checks} checks`);
      }
    } finally {
      await group.close();
    }
  });
}

Deno.test("a Worker rank that throws: its peer's allReduce fails with PeerLostError, results() rejects", async () => {
  const group = await spawnWorkers(2, new URL("../fixtures/failing_rank.ts", import.meta.url));
  try {
    const peer = new Promise<{ name: string; message: string } | null>((resolve) => {
      group.workers[0].addEventListener("message", (e: MessageEvent) => {
        if (e.data && "failed" in e.data) resolve(e.data.failed);
      });
    });
    await assert.rejects(
      group.results(120_000),
      (e: Error) => e.name === "PeerLostError" && /boom in rank 1/.test(e.message),
    );
    const got = await peer;
    assert.equal(got?.name, "PeerLostError", got?.message);
  } finally {
    await group.close();
  }
});
