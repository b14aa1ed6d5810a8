/**
 * @module
 * Lazy TCP links (`eitherDials`): whichever rank of a pair needs the link first dials, both dialing at
 * once ends with one connection (the higher rank's), every rank reaches every other on its first send or
 * receive without deadlock, a rank holds only the links it used, and a peer that is gone is named.
 */

import assert from "node:assert/strict";
import { PeerLostError } from "../../errors.ts";
import { MemoryStore, type Store } from "../../transports/store/mod.ts";
import { TcpTransport } from "../../transports/tcp/transport.ts";
import type { ChannelOptions } from "../../transports/transport.ts";

const hdr = (bytes: number, chunk = 0) => ({
  group: 0,
  seq: 0,
  op: 1,
  dtype: 0,
  count: 1,
  root: -1,
  chunk,
  bytes,
});

/** `n` lazy TCP ranks on one store (or each on the store `store(rank)` gives). */
async function lazyWorld(
  n: number,
  store: Store | ((rank: number) => Store) = new MemoryStore(),
): Promise<TcpTransport[]> {
  const storeOf = typeof store === "function" ? store : () => store;
  return await Promise.all(
    Array.from(
      { length: n },
      (_, rank) =>
        TcpTransport.create({
          rank,
          size: n,
          store: storeOf(rank),
          token: "t",
          timeoutMs: 20_000,
          eitherDials: true,
        }),
    ),
  );
}

/** Every rank sends its number to the next rank of a ring and receives the previous one's. */
async function ringPass(ts: TcpTransport[], opts?: ChannelOptions): Promise<void> {
  const n = ts.length;
  await Promise.all(ts.map(async (t) => {
    const next = (t.rank + 1) % n;
    const prev = (t.rank + n - 1) % n;
    const got = new Uint8Array(1);
    await Promise.all([
      t.channel(next, opts).then((ch) => ch.send(hdr(1), new Uint8Array([t.rank]))),
      t.channel(prev, opts).then((ch) => ch.recv(hdr(1), got)),
    ]);
    assert.equal(got[0], prev);
  }));
}

Deno.test("lazy tcp: every rank sends to every other first, then receives: all arrive, one link per pair", async () => {
  const n = 24;
  const ts = await lazyWorld(n);
  try {
    assert.deepEqual(ts.map((t) => t.connections()), new Array(n).fill(0), "nothing is connected up front");
    await Promise.all(ts.map(async (t) => {
      const sends = [];
      for (let p = 0; p < n; p++) {
        if (p === t.rank) continue;
        // Every pair dials from both ends at once: the crossing is resolved, not deadlocked.
        sends.push(t.channel(p).then((ch) => ch.send(hdr(4, t.rank), new Uint8Array([t.rank, p, 7, 9]))));
      }
      await Promise.all(sends);
      for (let p = 0; p < n; p++) {
        if (p === t.rank) continue;
        const got = new Uint8Array(4);
        await (await t.channel(p)).recv(hdr(4, p), got);
        assert.deepEqual([...got], [p, t.rank, 7, 9]);
      }
    }));
    assert.deepEqual(ts.map((t) => t.connections()), new Array(n).fill(n - 1), "exactly one link per pair");
  } finally {
    await Promise.all(ts.map((t) => t.close()));
  }
});

Deno.test("lazy tcp: a ring holds two links per rank; the lower rank may open a link the higher never asked for", async () => {
  const n = 16;
  const ts = await lazyWorld(n);
  try {
    await ringPass(ts);
    assert.deepEqual(ts.map((t) => t.connections()), new Array(n).fill(2));
    // Rank 0 sends to rank 9 before rank 9 asks for the link: the send completes (rank 0 dialed).
    const ch = await ts[0].channel(9);
    await ch.send(hdr(1), new Uint8Array([42]));
    const got = new Uint8Array(1);
    await (await ts[9].channel(0)).recv(hdr(1), got);
    assert.equal(got[0], 42);
    assert.equal(ts[0].connections(), 3);
  } finally {
    await Promise.all(ts.map((t) => t.close()));
  }
});

Deno.test("lazy tcp: a mutual ring (a collective's links) is dialed by the higher rank of each pair only", async () => {
  const n = 8;
  const shared = new MemoryStore();
  // Each rank's address lookups, counted: a rank that never dials never looks an address up.
  const lookups = new Array(n).fill(0);
  const counted = (rank: number): Store =>
    new Proxy(shared, {
      get(target, key, receiver) {
        const v = Reflect.get(target, key, receiver);
        if (key === "multiGet") {
          return (...a: Parameters<Store["multiGet"]>) => (lookups[rank]++, target.multiGet(...a));
        }
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  const ts = await lazyWorld(n, counted);
  try {
    await ringPass(ts, { mutual: true });
    assert.deepEqual(ts.map((t) => t.connections()), new Array(n).fill(2));
    // Rank 0's neighbours (1 and 7) are both higher: they dial it, and it dials nobody.
    assert.equal(lookups[0], 0, `rank 0 looked up addresses ${lookups[0]} times`);
    assert.ok(lookups.slice(1).every((c) => c >= 1), `lookups per rank: ${lookups}`);
  } finally {
    await Promise.all(ts.map((t) => t.close()));
  }
});

Deno.test("lazy tcp: crossing dials, 30 rounds: one connection each time", async () => {
  for (let round = 0; round < 30; round++) {
    const ts = await lazyWorld(2);
    try {
      const [a, b] = await Promise.all([ts[0].channel(1), ts[1].channel(0)]);
      const got = new Uint8Array(2);
      await Promise.all([a.send(hdr(2), new Uint8Array([round, 1])), b.recv(hdr(2), got)]);
      assert.deepEqual([...got], [round, 1]);
      assert.deepEqual(ts.map((t) => t.connections()), [1, 1], `round ${round}`);
    } finally {
      await Promise.all(ts.map((t) => t.close()));
    }
  }
});

Deno.test("lazy tcp: a peer that is gone before the first send is named in a PeerLostError", async () => {
  const ts = await lazyWorld(3);
  try {
    await ts[2].close();
    await assert.rejects(
      ts[0].channel(2),
      (e: Error) => e instanceof PeerLostError && /rank 2/.test(e.message),
    );
  } finally {
    await Promise.all(ts.map((t) => t.close()));
  }
});

Deno.test("lazy tcp: a mutual link whose higher rank never dials is dialed by the lower one after a grace; a gone one is named", async () => {
  const ts = await lazyWorld(3);
  try {
    // Rank 1 never asks for the link: rank 0 waits for its dial a while, then dials it.
    const ch = await ts[0].channel(1, { mutual: true });
    await ch.send(hdr(1), new Uint8Array([5]));
    const got = new Uint8Array(1);
    await (await ts[1].channel(0)).recv(hdr(1), got);
    assert.equal(got[0], 5);
    // Rank 2 is gone before it could dial: rank 0's own dial is refused, and names it.
    await ts[2].close();
    await assert.rejects(
      ts[0].channel(2, { mutual: true }),
      (e: Error) => e instanceof PeerLostError && /rank 2/.test(e.message),
    );
  } finally {
    await Promise.all(ts.map((t) => t.close()));
  }
});
