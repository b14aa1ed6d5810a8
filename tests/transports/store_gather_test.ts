/**
 * @module
 * Tests of Store.gather (an all-gather of short values, used for host ids): on the TCP store in one
 * request per rank, through a prefix, and through the set/add/read fallback (gatherAt over a store
 * without it); every rank gets the same compact table; a rank that never sends its value is named by the
 * timeout, within it; a request sent again is not counted twice; a bad gathering is refused.
 */

import assert from "node:assert/strict";
import { StoreError, StoreTimeoutError } from "../../errors.ts";
import {
  type Gathered,
  MemoryStore,
  PrefixStore,
  startStoreServer,
  type Store,
  TcpStore,
} from "../../transports/store/mod.ts";
import { badGathering, gatherAt } from "../../transports/store/all_gather.ts";
import { storeWithClients, TOKEN } from "../fixtures/store_clients.ts";

/** Host-like values: runs of equal values, one value coming back later (not only runs). */
const value = (r: number) => `host-${r < 40 ? "a" : r < 41 ? "b" : r % 2 ? "c" : "a"}`;

/** Every rank's value, back from the compact form. */
const expand = (g: Gathered) => Array.from(g.index, (i) => g.values[i]);

/** Counts the calls made through a store. */
function counting(s: Store, counted: { n: number }): Store {
  return new Proxy(s, {
    get(t, p, recv) {
      const v = Reflect.get(t, p, recv);
      return typeof v === "function" ? (...a: unknown[]) => (counted.n++, v.apply(t, a)) : v;
    },
  });
}

async function gatherAll(stores: (r: number) => Store, n: number, timeoutMs = 10_000): Promise<Gathered[]> {
  return await Promise.all(
    Array.from(
      { length: n },
      (_, r) => gatherAt(stores(r), { tag: "host", rank: r, size: n, value: value(r) }, timeoutMs),
    ),
  );
}

function assertAll(all: Gathered[], n: number): void {
  const want = Array.from({ length: n }, (_, r) => value(r));
  for (const g of all) {
    assert.deepEqual(expand(g), want);
    assert.deepEqual(g.values, ["host-a", "host-b", "host-c"]);
  }
}

Deno.test("gatherAt: the fallback over a MemoryStore, at most 3 calls a rank", async () => {
  const mem = new MemoryStore();
  const n = 100;
  const counted = { n: 0 };
  try {
    const all = await gatherAll(() => counting(mem, counted), n);
    assertAll(all, n);
    assert.ok(counted.n <= 3 * n + 2, `${counted.n} store calls`);
  } finally {
    await mem.close();
  }
});

Deno.test("TcpStore.gather: one request a rank, the same table for all, through a PrefixStore too", async () => {
  const n = 64;
  const job = await storeWithClients(n);
  const { server, clients } = job;
  try {
    await Promise.all(clients.map((c) => c.check([]))); // first contact, not counted below
    const before = (await server.stats()).requests;
    const all = await gatherAll((r) => new PrefixStore("g/", clients[r]), n);
    assertAll(all, n);
    const stats = await server.stats();
    assert.equal(stats.requests - before, n);
    assert.equal(stats.byRoute.gather, n);
    // The keys live under the prefix; every value was counted once.
    assert.equal(await clients[0].add("g/host/count", 0), n);
    // Asked again by a rank that has its answer: the table at once, nothing counted.
    const again = await new PrefixStore("g/", clients[5]).gather!({
      tag: "host",
      rank: 5,
      size: n,
      value: value(5),
    }, 1000);
    assert.deepEqual(expand(again), expand(all[0]));
    assert.equal(await clients[0].add("g/host/count", 0), n);
  } finally {
    await job.close();
  }
});

/** Ranks 0-2 of 4 gather; rank 3 never comes: each gets a StoreTimeoutError naming it, within time. */
async function missingRank(stores: Store[], key: string): Promise<void> {
  const timeoutMs = 400;
  const t0 = performance.now();
  const results = await Promise.allSettled(
    [0, 1, 2].map((r) => gatherAt(stores[r], { tag: "host", rank: r, size: 4, value: "h" }, timeoutMs)),
  );
  const took = performance.now() - t0;
  for (const r of results) {
    assert.equal(r.status, "rejected");
    const err = (r as PromiseRejectedResult).reason;
    assert.ok(err instanceof StoreTimeoutError, String(err));
    assert.match(err.message, new RegExp(`"${key}"`));
    assert.doesNotMatch(err.message, /host\/0"|host\/1"|host\/2"/);
  }
  assert.ok(took < timeoutMs + 1500, `took ${took} ms`);
}

Deno.test("gatherAt: a rank that never comes is named by the timeout (MemoryStore fallback)", async () => {
  const mem = new MemoryStore();
  try {
    await missingRank([mem, mem, mem], "host/3");
  } finally {
    await mem.close();
  }
});

Deno.test("TcpStore.gather: a rank that never comes is named by the timeout; a late one completes it", async () => {
  // The server's longest wait is shorter than the gather's: the client asks again, not counted twice.
  const job = await storeWithClients(4, 150);
  const { clients } = job;
  try {
    await missingRank(clients.map((c) => new PrefixStore("p/", c)), "p/host/3");
    assert.equal(await clients[0].add("p/host/count", 0), 3);
    // A second round under a fresh tag: rank 3 comes late, after several of the server's longest waits.
    const late = new Promise((r) => setTimeout(r, 500)).then(() =>
      gatherAt(clients[3], { tag: "late", rank: 3, size: 4, value: "y" }, 5_000)
    );
    const all = await Promise.all([
      ...[0, 1, 2].map((r) => gatherAt(clients[r], { tag: "late", rank: r, size: 4, value: "x" }, 5_000)),
      late,
    ]);
    for (const g of all) assert.deepEqual(expand(g), ["x", "x", "x", "y"]);
    assert.equal(await clients[0].add("late/count", 0), 4);
  } finally {
    await job.close();
  }
});

Deno.test("gather: a bad gathering is refused before anything is sent", async () => {
  assert.equal(badGathering({ tag: "t", rank: 0, size: 1, value: "v" }), null);
  assert.match(badGathering({ tag: "t", rank: 2, size: 2, value: "v" })!, /rank/);
  assert.match(badGathering({ tag: "t", rank: 0, size: 0, value: "v" })!, /size/);
  assert.match(badGathering({ tag: "t", rank: 0, size: 2 ** 40, value: "v" })!, /size/);
  assert.match(badGathering({ tag: "", rank: 0, size: 1, value: "v" })!, /tag/);
  assert.match(badGathering({ tag: "t", rank: 0, size: 1, value: "x".repeat(5000) })!, /value/);
  const mem = new MemoryStore();
  const server = await startStoreServer({ port: 0, token: TOKEN, thread: "main" });
  const client = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 5_000 });
  try {
    for (const s of [mem, client]) {
      await assert.rejects(gatherAt(s, { tag: "t", rank: 3, size: 2, value: "v" }, 100), StoreError);
    }
    assert.equal(await mem.numKeys(), 0);
  } finally {
    await client.close();
    await server.close();
    await mem.close();
  }
});
