/**
 * @module
 * Tests of Store.arrive (one request per rank at a join barrier): on the TCP store, through a prefix
 * and through the three-call fallback (arriveAt over a store without it), the claim, the count, the
 * last arrival setting the done key, a claim held by another arrival (nothing counted), and
 * joinBarrier's request count (a process asking again is not counted twice).
 */

import assert from "node:assert/strict";
import {
  type Arrival,
  joinBarrier,
  MemoryStore,
  PrefixStore,
  type Store,
} from "../../transports/store/mod.ts";
import { arriveAt } from "../../transports/store/store.ts";
import { storeWithClients } from "../fixtures/store_clients.ts";

function arrival(rank: number, size: number, claim = `claim-${rank}`): Arrival {
  return {
    claimKey: `b/${rank}`,
    claim,
    counterKey: "b/arrived",
    size,
    doneKey: "b/done",
    watchKeys: ["b/done", "b/duplicate"],
  };
}

/** Three arrivals of a barrier of 3, and a fourth claiming rank 1 again: the same on every store. */
async function exercise(stores: Store[]): Promise<void> {
  const first = await Promise.all([0, 1].map((r) => arriveAt(stores[r], arrival(r, 3), 200)));
  // The wait ran out before the barrier completed: held, nothing set yet.
  for (const [r, a] of first.entries()) assert.deepEqual(a, { held: `claim-${r}`, set: [] });
  const waiting = stores[0].watch(["b/done"], 5_000);
  const last = await arriveAt(stores[2], arrival(2, 3), 5_000);
  assert.deepEqual(last, { held: "claim-2", set: ["b/done"] });
  assert.deepEqual(await waiting, ["b/done"]);
  // Another claim of rank 1: nothing counted, nothing watched.
  assert.deepEqual(await arriveAt(stores[1], arrival(1, 3, "other"), 100), { held: "claim-1", set: null });
  assert.equal(await stores[0].add("b/arrived", 0), 3);
}

Deno.test("arriveAt: the three-call fallback over a MemoryStore", async () => {
  const mem = new MemoryStore();
  try {
    await exercise([mem, mem, mem]);
  } finally {
    await mem.close();
  }
});

Deno.test("TcpStore.arrive: one request each, through a PrefixStore too", async () => {
  const job = await storeWithClients(3);
  const { server, clients } = job;
  try {
    await exercise(clients.map((c) => new PrefixStore("p/", c)));
    const before = (await server.stats()).byRoute;
    assert.equal(before.arrive, 4, "the TCP store does arrivals itself");
    assert.equal(before.add ?? 0, 1, "only exercise()'s own read of the counter is an add");
    assert.equal(before.cas ?? 0, 0);
    // The keys live under the prefix.
    assert.equal(await clients[0].add("p/b/arrived", 0), 3);
  } finally {
    await job.close();
  }
});

Deno.test("joinBarrier over the TCP store: one request per rank", async () => {
  const n = 5;
  const job = await storeWithClients(n);
  const { server, clients } = job;
  try {
    await Promise.all(clients.map((c) => c.check([]))); // first contact, not counted below
    const before = (await server.stats()).requests;
    await Promise.all(clients.map((c, rank) => joinBarrier(c, rank, n, 10_000, "t")));
    assert.equal((await server.stats()).requests - before, n);
    // Asked again by the same process: passes at once (its claim is held), counted nothing more.
    await joinBarrier(clients[3], 3, n, 10_000, "t");
    assert.equal(await clients[0].add("t/arrived", 0), n);
  } finally {
    await job.close();
  }
});
