/**
 * @module
 * Embedding: several independent groups in one process (Worker groups with their own stores, and
 * in-process shm and tcp jobs, each with its own store server), created and destroyed 100 times with
 * Deno's op and resource sanitizers on, and no event listener, Worker or /dev/shm segment left behind.
 */

import assert from "node:assert/strict";
import { initProcessGroup } from "../../collectives/init.ts";
import type { ProcessGroup } from "../../collectives/process_group.ts";
import { freePort } from "../helpers/ranks.ts";
import { spawnWorkers } from "../../transports/worker/spawn.ts";
import { choirSegments, leftoverSegments } from "../helpers/shm_segments.ts";
import { workersLeft } from "../helpers/worker_count.ts";

const rankModule = new URL("../fixtures/embed_rank.ts", import.meta.url);

interface RankResult {
  sum: number;
  vectorOk: boolean;
}

/** The event listeners added to globalThis while `fn` runs and still there afterwards. */
async function leftListeners(fn: () => Promise<void>): Promise<string[]> {
  const add = globalThis.addEventListener;
  const remove = globalThis.removeEventListener;
  const live = new Map<unknown, string>();
  globalThis.addEventListener = function (...a: Parameters<typeof add>) {
    live.set(a[1], a[0]);
    return add.apply(globalThis, a);
  } as typeof add;
  globalThis.removeEventListener = function (...a: Parameters<typeof remove>) {
    live.delete(a[1]);
    return remove.apply(globalThis, a);
  } as typeof remove;
  try {
    await fn();
  } finally {
    globalThis.addEventListener = add;
    globalThis.removeEventListener = remove;
  }
  return [...live.values()];
}

Deno.test("two Worker groups of different jobs run side by side, each with its own store", async () => {
  const [a, b] = await Promise.all([
    spawnWorkers(3, rankModule, { data: { offset: 10 } }),
    spawnWorkers(2, rankModule, { data: { offset: 100 } }),
  ]);
  try {
    assert.notEqual(a.store, b.store);
    const [ra, rb] = await Promise.all([a.results(30_000), b.results(30_000)]) as [
      RankResult[],
      RankResult[],
    ];
    assert.deepEqual(ra.map((r) => r.sum), [33, 33, 33]); // 0+1+2 + 3*10
    assert.deepEqual(rb.map((r) => r.sum), [201, 201]); // 0+1 + 2*100
    assert.ok([...ra, ...rb].every((r) => r.vectorOk));
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

Deno.test("100 create/destroy cycles of a Worker group leak no op, resource, listener or Worker", async () => {
  let workers = { started: 0, running: 0 };
  const left = await leftListeners(async () => {
    workers = await workersLeft(async () => {
      for (let i = 0; i < 100; i++) {
        const g = await spawnWorkers(2, rankModule, { data: { offset: i } });
        const res = (await g.results(30_000)) as RankResult[];
        await g.close();
        assert.deepEqual(res.map((r) => r.sum), [1 + 2 * i, 1 + 2 * i], `cycle ${i}`);
        assert.ok(res.every((r) => r.vectorOk), `cycle ${i}`);
      }
    });
  });
  assert.deepEqual(workers, { started: 200, running: 0 }, "Workers left running");
  assert.deepEqual(left, [], "event listeners left on globalThis");
});

/**
 * Opens a 2-rank job of `transport` whose ranks are tasks of this process, through the public
 * `initProcessGroup()`: its own store server (tcp://, on a free port) and its own connections.
 */
async function inProcessJob(transport: "tcp" | "shm", job: string): Promise<ProcessGroup[]> {
  const initMethod = `tcp://127.0.0.1:${freePort()}`;
  const token = `token-${job}`;
  return await Promise.all(
    [0, 1].map((rank) =>
      initProcessGroup({ initMethod, rank, worldSize: 2, token, transport, timeoutMs: 20_000 })
    ),
  );
}

for (const transport of ["shm", "tcp"] as const) {
  Deno.test(`100 create/destroy cycles of in-process ${transport} jobs (two at once, own stores) leak nothing`, async () => {
    const before = choirSegments();
    const left = await leftListeners(async () => {
      for (let i = 0; i < 100; i++) {
        const jobs = await Promise.all([inProcessJob(transport, `a${i}`), inProcessJob(transport, `b${i}`)]);
        for (const [j, pgs] of jobs.entries()) {
          const xs = pgs.map((pg) => new Float32Array(64).fill(pg.rank + j));
          await Promise.all(pgs.map((pg, r) => pg.allReduce(xs[r])));
          assert.ok(xs.every((x) => x.every((e) => e === 1 + 2 * j)), `cycle ${i} job ${j}`);
        }
        for (const pgs of jobs) await Promise.all(pgs.map((pg) => pg.destroy()));
      }
    });
    assert.deepEqual(left, [], "event listeners left on globalThis");
    assert.deepEqual(await leftoverSegments(before), [], "a /dev/shm segment was left behind");
  });
}
