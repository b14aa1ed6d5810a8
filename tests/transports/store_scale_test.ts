/**
 * @module
 * The store's protocol for scale: multiGet and watch on every store, background watches that never keep
 * a process alive, the shared key watcher (one held watch per store, new subscriptions nudged in), the
 * O(1)-per-rank join barrier (requests counted on the server) and the all-gather of host ids.
 */

import assert from "node:assert/strict";
import { RendezvousError, StoreTimeoutError } from "../../errors.ts";
import {
  FileStore,
  joinBarrier,
  MemoryStore,
  PrefixStore,
  startStoreServer,
  type Store,
  TcpStore,
} from "../../transports/store/mod.ts";
import { onKeySet } from "../../transports/store/key_watcher.ts";

const TOKEN = "test-token-scale-0123456789";
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** multiGet and watch, on a fresh store. */
async function exerciseMultiAndWatch(store: Store): Promise<void> {
  await store.set("m/a", "A");
  await store.set("m/b", "B");
  assert.deepEqual((await store.multiGet(["m/b", "m/a", "m/b"], 1000)).map(text), ["B", "A", "B"]);
  assert.deepEqual(await store.multiGet([], 1000), []);
  // A multiGet parked before the last key is set is woken by it.
  const late = store.multiGet(["m/a", "m/late"], 5000);
  await store.set("m/late", "L");
  assert.deepEqual((await late).map(text), ["A", "L"]);
  await assert.rejects(store.multiGet(["m/a", "m/missing"], 150), (err: Error) => {
    assert.ok(err instanceof StoreTimeoutError, String(err));
    assert.match(err.message, /m\/missing/);
    assert.doesNotMatch(err.message, /"m\/a"/);
    return true;
  });

  // watch: at once when some keys are set (timeout 0 asks which exist), in the order asked.
  assert.deepEqual(await store.watch(["m/none", "m/b", "m/a"], 0), ["m/b", "m/a"]);
  assert.deepEqual(await store.watch(["m/none"], 0), []);
  const t0 = performance.now();
  assert.deepEqual(await store.watch(["m/none", "m/none2"], 150), []);
  assert.ok(performance.now() - t0 >= 140, "a watch with nothing set waits its timeout");
  const woken = store.watch(["m/w1", "m/w2"], 5000);
  await store.set("m/w2", "x");
  assert.deepEqual(await woken, ["m/w2"]);
}

Deno.test("MemoryStore, PrefixStore and FileStore: multiGet and watch", async () => {
  const mem = new MemoryStore();
  await exerciseMultiAndWatch(mem);
  await exerciseMultiAndWatch(new PrefixStore("p", new MemoryStore()));
  const dir = Deno.makeTempDirSync({ prefix: "choir-scale-test-" });
  const file = new FileStore(dir, { timeoutMs: 5000 });
  try {
    await exerciseMultiAndWatch(file);
  } finally {
    await file.close();
    Deno.removeSync(dir, { recursive: true });
  }
  await mem.close();
});

Deno.test("TcpStore: multiGet and watch in one request each, foreground and background", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN });
  const store = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 5000 });
  try {
    await exerciseMultiAndWatch(store);
    const before = (await server.stats()).requests;
    await store.multiGet(Array.from({ length: 300 }, () => "m/a"), 1000);
    await store.watch(Array.from({ length: 300 }, (_, i) => `m/x${i}`).concat("m/a"), 1000);
    // Two requests (stats are asked of the server thread, not over HTTP).
    assert.equal((await server.stats()).requests - before, 2);
    // A background watch: its own connection, woken like any other; abandoned by its signal.
    const bg = store.watch(["m/bg"], 5000, { background: true });
    await store.set("m/bg", "1");
    assert.deepEqual(await bg, ["m/bg"]);
    const ac = new AbortController();
    const abandoned = store.watch(["m/never"], 5000, { background: true, signal: ac.signal });
    ac.abort();
    await assert.rejects(abandoned, /abandoned/);
  } finally {
    await store.close();
    await server.close();
  }
});

Deno.test("a background watch does not keep the process alive", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN });
  try {
    const script = `
      import { TcpStore, MemoryStore } from "${
      new URL("../../transports/store/mod.ts", import.meta.url).href
    }";
      const tcp = new TcpStore({ host: "127.0.0.1", port: ${server.port}, token: "${TOKEN}", timeoutMs: 60000 });
      await tcp.check([]);
      tcp.watch(["never"], 60000, { background: true }).catch(() => {});
      new MemoryStore().watch(["never"], 60000, { background: true });
      console.log("watching");
    `;
    const t0 = performance.now();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", script],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    const took = performance.now() - t0;
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assert.match(text(out.stdout), /watching/);
    assert.ok(took < 20_000, `the process lived ${took} ms`);
  } finally {
    await server.close();
  }
});

Deno.test("onKeySet: one held watch per store; a later subscription is nudged in; stop and failure", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN });
  const store = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 5000 });
  try {
    const a = new PrefixStore("g1", store);
    const b = new PrefixStore("g2", store);
    const fired: string[] = [];
    const first = new Promise<void>((r) => onKeySet(a, "hang/request", () => (fired.push("a"), r())));
    await new Promise((r) => setTimeout(r, 100)); // the watch is held now
    const t0 = performance.now();
    const second = new Promise<void>((r) => onKeySet(b, "hang/request", () => (fired.push("b"), r())));
    const stopped = onKeySet(b, "other", () => fired.push("stopped"));
    stopped.stop();
    await new Promise((r) => setTimeout(r, 100));
    await b.set("hang/request", "1");
    await second;
    assert.ok(performance.now() - t0 < 5000, "a subscription made while the watch was held waited for it");
    await a.set("hang/request", "2");
    await first;
    await b.set("other", "1");
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(fired, ["b", "a"]);
    // A key set already fires at once.
    await new Promise<void>((r) => onKeySet(a, "hang/request", r));
    // A store that closes fails the subscribers.
    const failed = new Promise<unknown>((r) => onKeySet(store, "never", () => {}, r));
    await new Promise((r) => setTimeout(r, 100));
    await store.close();
    assert.ok(await failed);
  } finally {
    await store.close();
    await server.close();
  }
});

Deno.test("onKeySet: subscriptions made in one turn share the first watch (no nudge, delete or second watch)", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN });
  const store = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 5000 });
  try {
    await store.set("warm", "1"); // the session's hello and first request out of the count
    const before = await server.stats();
    const fired: string[] = [];
    // As a world group does at start-up: its hang-report key and the job's duplicate-rank key.
    const a = new Promise<void>((r) =>
      onKeySet(new PrefixStore("pg0/", store), "hang", () => (fired.push("a"), r()))
    );
    const b = new Promise<void>((r) =>
      onKeySet(new PrefixStore("pg0/join/", store), "dup", () => (fired.push("b"), r()))
    );
    const deadline = Date.now() + 5000;
    while ((await server.stats()).waiters < 1) {
      assert.ok(Date.now() < deadline, "no watch was held");
      await new Promise((r) => setTimeout(r, 10));
    }
    const held = await server.stats();
    // One request in all, the watch (stats are asked of the server thread, not over HTTP).
    assert.equal(held.requests - before.requests, 1, JSON.stringify(held.byRoute));
    assert.equal((held.byRoute.watch ?? 0) - (before.byRoute.watch ?? 0), 1, JSON.stringify(held.byRoute));
    await store.set("pg0/join/dup", "1");
    await b;
    await store.set("pg0/hang", "1");
    await a;
    assert.deepEqual(fired, ["b", "a"]);
  } finally {
    await store.close();
    await server.close();
  }
});

Deno.test("joinBarrier: 3 store requests per rank whatever the size, over TCP; a missing rank is named", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN });
  const n = 64;
  const stores = Array.from(
    { length: n },
    (_, rank) =>
      new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 10_000, rank }),
  );
  try {
    await Promise.all(stores.map((s) => s.check([])));
    const before = (await server.stats()).requests;
    await Promise.all(stores.map((s, r) => joinBarrier(s, r, n, 10_000, "t/join")));
    const used = (await server.stats()).requests - before;
    assert.ok(used <= 3 * n + 1, `the barrier took ${used} requests for ${n} ranks`);
    // The same tag again passes at once, without counting anyone twice.
    await joinBarrier(stores[5], 5, n, 1000, "t/join");
    // Rank 3 never comes: every other rank names it.
    const errs = await Promise.allSettled(
      stores.filter((_, r) => r !== 3).map((s, i) => joinBarrier(s, i < 3 ? i : i + 1, n, 300, "t/missing")),
    );
    for (const e of errs) {
      assert.equal(e.status, "rejected");
      const err = (e as PromiseRejectedResult).reason as Error;
      assert.ok(err instanceof RendezvousError, String(err));
      assert.match(err.message, /rank 3 of 64 never arrived/);
    }
  } finally {
    await Promise.all(stores.map((s) => s.close()));
    await server.close();
  }
});

Deno.test("joinBarrier on a MemoryStore: 2048 ranks in well under a second's work", async () => {
  // The old barrier had every rank wait on all N keys, and each set scanned every waiter's list
  // (about N^3/2 comparisons: seconds at this size). Now each set touches the waiters of its key.
  const mem = new MemoryStore();
  const n = 2048;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, (_, r) => joinBarrier(mem, r, n, 60_000, "big")));
  const took = performance.now() - t0;
  assert.ok(took < 5000, `took ${took} ms`);
  await mem.close();
});

Deno.test("store server on its own thread: a rank 0 that blocks its event loop does not delay others' calls", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN });
  try {
    const script = `
      import { TcpStore } from "${new URL("../../transports/store/mod.ts", import.meta.url).href}";
      const s = new TcpStore({ host: "127.0.0.1", port: ${server.port}, token: "${TOKEN}", timeoutMs: 20000 });
      await s.check([]);
      console.log("ready");
      await s.get("blocked/now");
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) await s.add("n", 1);
      console.log("took " + Math.round(performance.now() - t0));
      await s.set("child/done", "1");
      await s.close();
    `;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", "--ext=ts", script],
      stdout: "piped",
      stderr: "inherit",
      signal: AbortSignal.timeout(30_000),
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("ready")) out += (await lines.read()).value ?? "";
    const store = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 20_000 });
    await store.set("blocked/now", "1");
    // This thread computes for 2 s without yielding, as a rank in a long kernel or a spin-wait would.
    const until = performance.now() + 2000;
    while (performance.now() < until) { /* busy */ }
    await store.multiGet(["child/done"], 20_000);
    for (let r = await lines.read(); !r.done; r = await lines.read()) out += r.value;
    await child.status;
    const took = Number(/took (\d+)/.exec(out)?.[1]);
    assert.ok(took < 1500, `20 store calls took ${took} ms while the serving thread was busy`);
    await store.close();
  } finally {
    await server.close();
  }
});

Deno.test("store server: its accept queue is widened past Deno's (no first contact waits for a resent SYN)", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN, thread: "main" });
  try {
    // For a listening socket, ss shows the accept queue's length in the Send-Q column.
    const out = await new Deno.Command("ss", { args: ["-ltnH", `sport = :${server.port}`], stdout: "piped" })
      .output().catch(() => null);
    if (out === null || !out.success) return; // no ss here: nothing to read the queue with
    const sendQ = Number(new TextDecoder().decode(out.stdout).trim().split(/\s+/)[2]);
    const somaxconn = Number(await Deno.readTextFile("/proc/sys/net/core/somaxconn"));
    assert.equal(sendQ, Math.min(somaxconn, 2048), `accept queue ${sendQ}`);
  } finally {
    await server.close();
  }
});
