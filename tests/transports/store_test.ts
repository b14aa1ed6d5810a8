/**
 * @module
 * Tests of the stores (memory, file, prefix, TCP client + Hono server) and of rendezvous: every op,
 * cross-process waits, timeouts, auth, unreachable servers, joinBarrier and init method parsing.
 */

import assert from "node:assert/strict";
import {
  AuthError,
  InvalidArgumentError,
  RendezvousError,
  StoreError,
  StoreTimeoutError,
} from "../../errors.ts";
import {
  createStore,
  FileStore,
  joinBarrier,
  MemoryStore,
  parseInitMethod,
  PrefixStore,
  startStoreServer,
  type Store,
  type StoreServer,
  TcpStore,
} from "../../transports/store/mod.ts";

const TOKEN = "test-token-0123456789";
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const fixture = (name: string) => new URL(`../fixtures/${name}`, import.meta.url).pathname;

/** Every Store op, on a fresh store. */
async function exerciseStore(store: Store): Promise<void> {
  assert.equal(await store.numKeys(), 0);
  await store.set("a", "alpha");
  assert.equal(text(await store.get("a")), "alpha");
  await store.set("a", new Uint8Array([0, 255, 7]));
  assert.deepEqual(await store.get("a"), new Uint8Array([0, 255, 7]));
  await store.set("odd/key %?#é", "x");
  assert.equal(text(await store.get("odd/key %?#é")), "x");
  const long = "k".repeat(300);
  await store.set(long, "long");
  assert.equal(text(await store.get(long)), "long");

  assert.equal(await store.add("n", 5), 5);
  assert.equal(await store.add("n", -2), 3);
  assert.equal(text(await store.get("n")), "3");
  await assert.rejects(store.add("a", 1), StoreError);

  assert.equal(text(await store.compareSet("c", "", "first")), "first");
  assert.equal(text(await store.compareSet("c", "", "second")), "first");
  assert.equal(text(await store.compareSet("c", "wrong", "second")), "first");
  assert.equal(text(await store.compareSet("c", "first", "second")), "second");
  assert.equal((await store.compareSet("absent", "x", "y")).length, 0);
  assert.equal(await store.check(["absent"]), false);

  assert.equal(await store.check(["a", "n", "c"]), true);
  assert.equal(await store.check(["a", "nope"]), false);
  await store.wait(["a", "n"], 1000);
  assert.equal(await store.numKeys(), 5);

  assert.equal(await store.deleteKey("a"), true);
  assert.equal(await store.deleteKey("a"), false);
  assert.equal(await store.check(["a"]), false);
  assert.equal(await store.numKeys(), 4);
  await assert.rejects(store.set("", "x"), InvalidArgumentError);

  // A wait parked before the set is woken by it.
  const waiting = store.wait(["late"], 5000);
  await store.set("late", "1");
  await waiting;
}

/** wait and get on a missing key throw StoreTimeoutError naming it, near the timeout. */
async function assertTimesOut(store: Store, timeoutMs = 200, slackMs = 1000): Promise<void> {
  let t0 = performance.now();
  await assert.rejects(store.wait(["present", "missing-key"], timeoutMs), (err: Error) => {
    assert.ok(err instanceof StoreTimeoutError, String(err));
    assert.match(err.message, /missing-key/);
    assert.doesNotMatch(err.message, /"present"/);
    assert.match(err.message, /store\.wait/);
    return true;
  });
  let took = performance.now() - t0;
  assert.ok(took >= timeoutMs - 5 && took < timeoutMs + slackMs, `wait took ${took} ms`);

  t0 = performance.now();
  await assert.rejects((store as MemoryStore).get("missing-key", timeoutMs), StoreTimeoutError);
  took = performance.now() - t0;
  assert.ok(took >= timeoutMs - 5 && took < timeoutMs + slackMs, `get took ${took} ms`);
}

function tempDir(): string {
  return Deno.makeTempDirSync({ prefix: "choir-store-test-" });
}

async function freePort(): Promise<number> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return await Promise.resolve(port);
}

async function withServer(fn: (server: StoreServer) => Promise<void>): Promise<void> {
  const server = await startStoreServer({ port: 0, token: TOKEN });
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

function tcpClient(server: StoreServer, extra: { timeoutMs?: number; token?: string } = {}): TcpStore {
  return new TcpStore({ host: server.hostname, port: server.port, token: TOKEN, ...extra });
}

/** Runs store_peer.ts against a store while this process does the other half of the exchange. */
async function crossProcess(store: Store, peerArgs: string[]): Promise<void> {
  await store.set("present", "1");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fixture("store_peer.ts"), ...peerArgs],
    stdout: "piped",
    stderr: "piped",
  }).output();
  await store.wait(["peer/ready"], 10_000);
  for (let i = 0; i < 50; i++) await store.add("counter", 1);
  // Long-poll for the echo before the peer can possibly send it: it needs "parent/go" first.
  const echo = store.get("peer/echo");
  await store.set("parent/go", "hello from the test");
  assert.equal(text(await echo), "hello from the test");
  const out = await child;
  assert.equal(out.code, 0, text(out.stderr));
  assert.equal(text(await store.get("counter")), "100");
  assert.equal(text(await store.compareSet("cas", "", "test")), "peer");
}

Deno.test("MemoryStore: every op, and waits woken by promises", async () => {
  const store = new MemoryStore({ timeoutMs: 5000 });
  await exerciseStore(store);
  await store.close();
});

Deno.test("MemoryStore: wait and get time out with StoreTimeoutError naming the missing key", async () => {
  const store = new MemoryStore();
  await store.set("present", "1");
  await assertTimesOut(store);
  await store.close();
});

Deno.test("MemoryStore: close fails pending waits and later calls", async () => {
  const store = new MemoryStore();
  const pending = store.wait(["never"], 60_000);
  await store.close();
  await assert.rejects(
    pending,
    (err: Error) => err instanceof StoreError && !(err instanceof StoreTimeoutError),
  );
  await assert.rejects(store.set("x", "1"), StoreError);
});

Deno.test("PrefixStore: every op, keys live under the prefix, close leaves the inner store open", async () => {
  const inner = new MemoryStore({ timeoutMs: 5000 });
  const store = new PrefixStore("pg0", inner);
  await exerciseStore(store);
  assert.equal(text(await inner.get("pg0/n")), "3");
  await store.close();
  await assert.rejects(store.get("n"), StoreError);
  assert.equal(await inner.check(["pg0/n"]), true);
  await new PrefixStore("pg1/", inner).set("k", "v");
  assert.equal(await inner.check(["pg1/k"]), true);
  await inner.close();
});

Deno.test("FileStore: every op in one process", async () => {
  const dir = tempDir();
  const store = new FileStore(dir, { timeoutMs: 5000 });
  await exerciseStore(store);
  await store.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("FileStore: wait and get time out within the bound; close stops a pending wait", async () => {
  const dir = tempDir();
  const store = new FileStore(dir);
  await store.set("present", "1");
  await assertTimesOut(store);
  const pending = store.wait(["never"], 60_000);
  await store.close();
  await assert.rejects(pending, StoreError);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("FileStore: two processes share keys, atomic add, compareSet, long wait woken by the other", async () => {
  const dir = tempDir();
  const store = new FileStore(dir, { timeoutMs: 10_000 });
  await crossProcess(store, ["file", dir]);
  await store.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("FileStore: with worldSize, the last close removes the directory", async () => {
  const dir = tempDir() + "/store";
  const a = new FileStore(dir, { worldSize: 2 });
  const b = new FileStore(dir, { worldSize: 2 });
  await a.set("k", "v");
  assert.equal(text(await b.get("k")), "v");
  await a.close();
  assert.ok(Deno.statSync(dir).isDirectory);
  await b.close();
  assert.throws(() => Deno.statSync(dir), Deno.errors.NotFound);
  await Deno.remove(dir.slice(0, -"/store".length), { recursive: true });
});

Deno.test("TcpStore: every op against the Hono server", async () => {
  await withServer(async (server) => {
    const store = tcpClient(server, { timeoutMs: 5000 });
    await exerciseStore(store);
    await store.close();
  });
});

Deno.test("TcpStore: long-poll wait and get time out server-side with the missing keys", async () => {
  await withServer(async (server) => {
    const store = tcpClient(server);
    await store.set("present", "1");
    await assertTimesOut(store);
    await store.close();
  });
});

Deno.test("TcpStore: two processes, long-poll woken by the other process's set", async () => {
  await withServer(async (server) => {
    const store = tcpClient(server, { timeoutMs: 10_000 });
    await crossProcess(store, ["tcp", `${server.hostname}:${server.port}`, TOKEN]);
    await store.close();
  });
});

Deno.test("TcpStore: close aborts a pending long-poll; server close ends its long-polls", async () => {
  await withServer(async (server) => {
    const store = tcpClient(server);
    const pending = store.wait(["never"], 60_000);
    await store.close();
    await assert.rejects(pending, (err: Error) => err instanceof StoreError && /closed/.test(err.message));

    const other = tcpClient(server);
    await other.check([]); // First contact made: from now on a refused connection fails at once.
    const parked = assert.rejects(other.get("never", 60_000), StoreError);
    await server.close();
    await parked;
    await other.close();
  });
});

Deno.test("store server: requests without or with a wrong token get 401 / AuthError", async () => {
  await withServer(async (server) => {
    const url = `http://${server.hostname}:${server.port}/v1/num-keys`;
    const bare = await fetch(url);
    assert.equal(bare.status, 401);
    await bare.body?.cancel();
    const wrong = await fetch(url, { headers: { authorization: "Bearer nope" } });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();

    const store = tcpClient(server, { token: "not-the-token" });
    await assert.rejects(store.set("k", "v"), (err: Error) => {
      assert.ok(err instanceof AuthError, String(err));
      assert.match(err.message, /store\.set/);
      return true;
    });
    await store.close();
    const good = tcpClient(server);
    assert.equal(await good.check(["k"]), false);
    await good.close();
  });
});

Deno.test("TcpStore: nothing listening → StoreError naming the address within the timeout", async () => {
  const port = await freePort();
  const store = new TcpStore({ host: "127.0.0.1", port, token: TOKEN, timeoutMs: 400 });
  const t0 = performance.now();
  await assert.rejects(store.set("k", "v"), (err: Error) => {
    assert.ok(err instanceof StoreError && !(err instanceof StoreTimeoutError), String(err));
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.match(err.message, /tried for \d+ ms/);
    return true;
  });
  const took = performance.now() - t0;
  assert.ok(took >= 350 && took < 1400, `took ${took} ms`);
  await store.close();
});

Deno.test("joinBarrier: a rank that never arrives is named in a RendezvousError", async () => {
  const store = new MemoryStore();
  const t0 = performance.now();
  const results = await Promise.allSettled([0, 1].map((r) => joinBarrier(store, r, 4, 300)));
  const took = performance.now() - t0;
  assert.ok(took < 1300, `took ${took} ms`);
  for (const res of results) {
    assert.equal(res.status, "rejected");
    const err = (res as PromiseRejectedResult).reason as Error;
    assert.ok(err instanceof RendezvousError, String(err));
    assert.match(err.message, /ranks 2, 3 of 4 never arrived within 300 ms/);
  }
  // With all ranks present (a new tag), it passes.
  await Promise.all([0, 1].map((r) => joinBarrier(store, r, 2, 1000, "second")));
  await store.close();
});

Deno.test("parseInitMethod: env://, tcp://, file:// and malformed ones", () => {
  assert.deepEqual(parseInitMethod(undefined), { kind: "env" });
  assert.deepEqual(parseInitMethod("env://"), { kind: "env" });
  assert.deepEqual(parseInitMethod("tcp://10.1.2.3:29500"), { kind: "tcp", host: "10.1.2.3", port: 29500 });
  assert.deepEqual(parseInitMethod("tcp://[::1]:7"), { kind: "tcp", host: "::1", port: 7 });
  assert.deepEqual(parseInitMethod("file:///tmp/choir"), { kind: "file", path: "/tmp/choir" });
  const bad: [string, RegExp][] = [
    ["tcp://host", /needs a port/],
    ["tcp://host:99999", /not a URL/],
    ["tcp://host:12/x", /only HOST:PORT/],
    ["env://somewhere", /nothing after/],
    ["file://relative/path", /absolute path/],
    ["http://x:1", /unknown scheme "http:"/],
    ["garbage", /not a URL/],
    ["", /not a URL/],
  ];
  for (const [url, why] of bad) {
    assert.throws(() => parseInitMethod(url), (err: Error) => {
      assert.ok(err instanceof RendezvousError, `${url}: ${err}`);
      assert.match(err.message, why);
      return true;
    });
  }
});

Deno.test("createStore: missing RANK / WORLD_SIZE / MASTER_ADDR / token give RendezvousErrors", async () => {
  const env = { masterAddr: "127.0.0.1", masterPort: 1234, token: TOKEN };
  await assert.rejects(createStore("env://", { env: { ...env, worldSize: 2 } }), /needs RANK/);
  await assert.rejects(createStore("env://", { env: { ...env, rank: 0 } }), /needs WORLD_SIZE/);
  await assert.rejects(createStore("env://", { env: { ...env, rank: 2, worldSize: 2 } }), /rank must be/);
  await assert.rejects(
    createStore("env://", { rank: 0, worldSize: 1, env: { token: TOKEN } }),
    /MASTER_ADDR/,
  );
  await assert.rejects(createStore("tcp://127.0.0.1:1234", { rank: 1, worldSize: 2 }), /job token/);
  await assert.rejects(createStore("bogus://", { rank: 0, worldSize: 1 }), RendezvousError);
});

Deno.test("createStore: tcp:// across processes, rank 1 first (its first contact retries)", async () => {
  const url = `tcp://127.0.0.1:${await freePort()}`;
  const rank0 = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fixture("store_rank.ts"), url, "0", "2", TOKEN],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const rdv = await createStore(url, { rank: 1, worldSize: 2, token: TOKEN, timeoutMs: 10_000 });
  await joinBarrier(rdv.store, rdv.rank, rdv.worldSize, 10_000);
  await rdv.store.set("done/1", "1");
  const out = await rank0;
  assert.equal(out.code, 0, text(out.stderr));
  assert.match(text(out.stdout), /rank 0 joined/);
  await rdv.close();
});

Deno.test("createStore: env:// with an external server, and file://", async () => {
  await withServer(async (server) => {
    const env = {
      masterAddr: server.hostname,
      masterPort: server.port,
      token: TOKEN,
      worldSize: 2,
      storeExternal: true,
    };
    const ranks = await Promise.all([0, 1].map((rank) => createStore(undefined, { env: { ...env, rank } })));
    await Promise.all(ranks.map((r) => joinBarrier(r.store, r.rank, r.worldSize, 5000)));
    for (const r of ranks) await r.close();
    await assert.rejects(
      createStore("env://", { env: { ...env, rank: 0, token: "wrong" } }),
      AuthError,
    );
  });

  const dir = tempDir();
  const ranks = await Promise.all(
    [0, 1].map((rank) => createStore(`file://${dir}/s`, { rank, worldSize: 2, timeoutMs: 5000 })),
  );
  await Promise.all(ranks.map((r) => joinBarrier(r.store, r.rank, r.worldSize, 5000)));
  for (const r of ranks) await r.close();
  assert.throws(() => Deno.statSync(`${dir}/s`), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("createStore: unreachable server → RendezvousError within the timeout", async () => {
  const url = `tcp://127.0.0.1:${await freePort()}`;
  const t0 = performance.now();
  await assert.rejects(
    createStore(url, { rank: 1, worldSize: 2, token: TOKEN, timeoutMs: 300 }),
    (err: Error) => {
      assert.ok(err instanceof RendezvousError, String(err));
      assert.match(
        err.message,
        /cannot reach the store server at http:\/\/127\.0\.0\.1:\d+ \(tried for \d+ ms\)/,
      );
      return true;
    },
  );
  assert.ok(performance.now() - t0 < 1300);
});
