/**
 * @module
 * The bounded store and status servers, against real servers: a slowloris (in this process, and past
 * the file limit of a server process) does not delay calls beyond a second; an oversized body is
 * refused (413, a StoreError) before it arrives; connections are capped; long-polls whose client went
 * away are dropped; `timeout=Infinity` is clamped, and TcpStore waits across the clamp.
 */

import { type ClientSession, startHello } from "../../transports/store/tcp_session.ts";
import assert from "node:assert/strict";
import { StoreError } from "../../errors.ts";
import { startStoreServer, type StoreServer, TcpStore } from "../../transports/store/mod.ts";
import { startStatusServer } from "../../collectives/diagnostics/status_server.ts";

const TOKEN = "bounds-token-0123456789";
const enc = new TextEncoder();
const fixture = (name: string) => new URL(`../fixtures/${name}`, import.meta.url).pathname;

/** Connections that sent part of a request head and add one header line every 300 ms, forever. */
class Slowloris {
  readonly conns: Deno.TcpConn[] = [];
  #timer: ReturnType<typeof setInterval> | undefined;

  static async open(port: number, n: number): Promise<Slowloris> {
    const s = new Slowloris();
    for (let i = 0; i < n; i++) {
      try {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        s.conns.push(c);
        c.write(enc.encode(`GET /v1/num-keys HTTP/1.1\r\nhost: x\r\n`)).catch(() => 0);
      } catch { /* refused */ }
    }
    s.#timer = setInterval(() => {
      for (const c of s.conns) c.write(enc.encode("x-slow: 1\r\n")).catch(() => 0);
    }, 300);
    return s;
  }

  close(): void {
    clearInterval(this.#timer);
    for (const c of this.conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }
}

/** Times `n` rounds of set+get through a fresh TcpStore; returns the slowest round in ms. */
async function slowestCall(port: number, n: number): Promise<number> {
  const store = new TcpStore({ host: "127.0.0.1", port, token: TOKEN, timeoutMs: 10_000 });
  let worst = 0;
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await store.set(`k${i}`, `v${i}`);
      assert.equal(new TextDecoder().decode(await store.get(`k${i}`)), `v${i}`);
      worst = Math.max(worst, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 150));
    }
  } finally {
    await store.close();
  }
  return worst;
}

/** Sends `head` (and nothing more) on a new connection; returns the response's first line or "closed". */
async function rawStatus(port: number, head: string, timeoutMs = 3000): Promise<string> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => c.close(), timeoutMs);
  try {
    await c.write(enc.encode(head));
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\r\n")) {
      const n = await c.read(buf);
      if (n === null) return text === "" ? "closed" : text;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text.slice(0, text.indexOf("\r\n"));
  } catch {
    return "timeout";
  } finally {
    clearTimeout(timer);
    try {
      c.close();
    } catch { /* closed */ }
  }
}

/** Resolves when `cond` holds, or throws after `ms`. */
async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("store server: a slowloris of 300 connections does not delay calls beyond a second", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN });
  const slow = await Slowloris.open(server.port, 300);
  try {
    const worst = await slowestCall(server.port, 8);
    assert.ok(worst < 1000, `slowest call took ${worst.toFixed(0)} ms`);
  } finally {
    slow.close();
    await server.close();
  }
});

Deno.test("store server with 32 connections at most: a slowloris of 200 does not delay calls beyond a second", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN, limits: { maxConnections: 32 } });
  const slow = await Slowloris.open(server.port, 200);
  try {
    await until(async () => (await server.stats()).connections <= 32, 2000, "the cap");
    const worst = await slowestCall(server.port, 8);
    assert.ok(worst < 1000, `slowest call took ${worst.toFixed(0)} ms`);
    const { connections } = await server.stats();
    assert.ok(connections <= 32, `${connections} connections`);
  } finally {
    slow.close();
    await server.close();
  }
});

Deno.test("store server under ulimit -n 96: a slowloris past the file limit does not delay calls beyond a second", async () => {
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n 96 && exec "$@"`,
      "store",
      Deno.execPath(),
      "run",
      "-A",
      fixture("store_server.ts"),
      TOKEN,
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const err = new Response(child.stderr).text();
  let slow: Slowloris | undefined;
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!/PORT \d+/.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the store server exited: ${await err}`);
      out += value;
    }
    reader.releaseLock();
    const port = Number(/PORT (\d+)/.exec(out)![1]);
    slow = await Slowloris.open(port, 300);
    await new Promise((r) => setTimeout(r, 500));
    const worst = await slowestCall(port, 8);
    assert.ok(worst < 1000, `slowest call took ${worst.toFixed(0)} ms`);
  } finally {
    clearTimeout(killer);
    slow?.close();
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await err.catch(() => "");
  }
});

Deno.test("store server: an oversized PUT is refused (413) before its body arrives; the store still works", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN, limits: { maxBodyBytes: 1 << 20 } });
  const store = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 10_000 });
  try {
    const head = `PUT /v1/kv/big HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\n` +
      `content-length: ${2 ** 40}\r\n\r\n`;
    const t0 = Date.now();
    assert.match(await rawStatus(server.port, head), /^HTTP\/1\.1 413 /);
    assert.ok(Date.now() - t0 < 2000);
    // Through the client: a typed StoreError naming the limit; then everything else still works.
    await assert.rejects(store.set("big", new Uint8Array(8 << 20)), (e: unknown) => {
      assert.ok(e instanceof StoreError, String(e));
      assert.match((e as Error).message, /413|too large|limit/i);
      return true;
    });
    await store.set("small", "ok");
    assert.equal(new TextDecoder().decode(await store.get("small")), "ok");
    assert.equal(await store.check(["big"]), false);
  } finally {
    await store.close();
    await server.close();
  }
});

Deno.test("store server: connections are capped, idle ones go first", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN, limits: { maxConnections: 16 } });
  const idle: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 40; i++) idle.push(await Deno.connect({ hostname: "127.0.0.1", port: server.port }));
    await until(async () => (await server.stats()).connections <= 16, 2000, "the cap");
    const worst = await slowestCall(server.port, 3);
    assert.ok(worst < 1000, `slowest call took ${worst.toFixed(0)} ms`);
  } finally {
    for (const c of idle) c.close();
    await server.close();
  }
});

/** A store session with the server at `port`, opened as TcpStore opens one. */
async function openSession(port: number): Promise<ClientSession> {
  const hello = startHello(TOKEN);
  // `connection: close`: the hello leaves no pooled connection behind for the counts below.
  const res = await fetch(`http://127.0.0.1:${port}/v1/hello`, {
    method: "POST",
    body: hello.body,
    headers: { connection: "close" },
  });
  return await hello.open(res.status, new Uint8Array(await res.arrayBuffer()), `127.0.0.1:${port}`, {});
}

Deno.test("store server: long-polls whose client went away are dropped; timeout=Infinity is clamped", async () => {
  const server: StoreServer = await startStoreServer({ port: 0, token: TOKEN, maxWaitMs: 400 });
  const conns: Deno.TcpConn[] = [];
  try {
    // Each raw request is signed in a session of the server it goes to (a counter is used once).
    const signedGet = async (port: number) => {
      const session = await openSession(port);
      return () => {
        const path = "/v1/kv/never?timeout=Infinity";
        const { header } = session.sign("GET", path, new Uint8Array(0));
        return `GET ${path} HTTP/1.1\r\nhost: x\r\nauthorization: ${header}\r\n\r\n`;
      };
    };
    // Infinity is clamped to the server's longest wait: 408 after it, not never.
    const t0 = Date.now();
    assert.match(
      await rawStatus(server.port, (await signedGet(server.port))(), 5000),
      /^HTTP\/1\.1 408 /,
    );
    assert.ok(Date.now() - t0 < 3000, `answered after ${Date.now() - t0} ms`);
    await server.close();
    // Waiters of clients that hung up leave at once.
    const server2 = await startStoreServer({ port: 0, token: TOKEN });
    try {
      const get = await signedGet(server2.port);
      for (let i = 0; i < 50; i++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port: server2.port });
        await c.write(enc.encode(get()));
        conns.push(c);
      }
      await until(async () => (await server2.stats()).waiters === 50, 3000, "50 waiters");
      for (const c of conns.splice(0)) c.close();
      await until(async () => (await server2.stats()).waiters === 0, 1000, "the waiters to leave");
      await until(async () => (await server2.stats()).connections === 0, 1000, "the connections to close");
    } finally {
      await server2.close();
    }
  } finally {
    for (const c of conns) c.close();
    await server.close();
  }
});

Deno.test("TcpStore: get and wait with no timeout outlive the server's long-poll clamp", async () => {
  const server = await startStoreServer({ port: 0, token: TOKEN, maxWaitMs: 300 });
  const a = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 10_000 });
  const b = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 10_000 });
  try {
    const got = a.get("late", Infinity);
    const waited = b.wait(["late"], Infinity);
    await new Promise((r) => setTimeout(r, 1000));
    await a.set("late", "here");
    assert.equal(new TextDecoder().decode(await got), "here");
    await waited;
    // A finite timeout longer than the clamp still times out at its own deadline, not the clamp's.
    const t0 = Date.now();
    await assert.rejects(a.get("never", 900), StoreError);
    assert.ok(Date.now() - t0 >= 850, `gave up after ${Date.now() - t0} ms`);
  } finally {
    await a.close();
    await b.close();
    await server.close();
  }
});

for (const thread of ["main", "worker"] as const) {
  Deno.test(`store server on the ${thread} thread: mget, watch and stats are signed, clamped and dropped with their client; stats count both ways`, async () => {
    const server = await startStoreServer({
      port: 0,
      token: TOKEN,
      maxWaitMs: 300,
      thread,
      limits: { maxBodyBytes: 1 << 20 },
    });
    const a = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 10_000 });
    const conns: Deno.TcpConn[] = [];
    try {
      // The new routes without a session: the one 401 of everything unauthenticated.
      for (
        const [method, path] of [["POST", "/v1/mget?timeout=0"], ["POST", "/v1/watch?timeout=0"], [
          "GET",
          "/v1/stats",
        ]]
      ) {
        const head = `${method} ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\n` +
          `content-length: 0\r\n\r\n`;
        assert.match(await rawStatus(server.port, head), /^HTTP\/1\.1 401 /, `${method} ${path}`);
      }
      // Through the client, past the server's 300 ms clamp: multiGet and watch wait for their own deadline.
      const got = a.multiGet(["m/late", "m/early"], Infinity);
      const watched = a.watch(["m/late"], 5_000);
      await a.set("m/early", "1");
      await new Promise((r) => setTimeout(r, 900));
      await a.set("m/late", "2");
      assert.deepEqual((await got).map((v) => new TextDecoder().decode(v)), ["2", "1"]);
      assert.deepEqual(await watched, ["m/late"]);
      const t0 = Date.now();
      assert.deepEqual(await a.watch(["m/never"], 800), []);
      assert.ok(Date.now() - t0 >= 750, `the watch gave up after ${Date.now() - t0} ms`);
      // The bounded server's body cap holds for the new routes too (an unsigned 413, a StoreError).
      const many = Array.from({ length: 40_000 }, (_, i) => `m/a-rather-long-key-name-${i}`);
      await assert.rejects(
        a.multiGet(many, 0),
        (e: unknown) => e instanceof StoreError && /413/.test(String(e)),
      );
      // A raw, signed watch whose client hangs up leaves the server's waiters at once.
      const session = await openSession(server.port);
      for (let i = 0; i < 5; i++) {
        const body = new TextEncoder().encode(JSON.stringify({ keys: [`m/none${i}`] }));
        const path = "/v1/watch?timeout=Infinity";
        const { header } = session.sign("POST", path, body);
        const c = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        await c.write(enc.encode(
          `POST ${path} HTTP/1.1\r\nhost: x\r\nauthorization: ${header}\r\ncontent-length: ${body.length}\r\n\r\n`,
        ));
        await c.write(body);
        conns.push(c);
      }
      await until(async () => (await server.stats()).waiters === 5, 3000, "5 waiters");
      const stats = await server.stats();
      assert.ok(stats.connections >= 6, `${stats.connections} connections open`);
      assert.ok(stats.connectionsSeen >= stats.connections, JSON.stringify(stats));
      assert.ok(
        (stats.byRoute.mget ?? 0) >= 3 && (stats.byRoute.watch ?? 0) >= 7,
        JSON.stringify(stats.byRoute),
      );
      assert.ok(stats.requests > 0 && stats.inFlight >= 5 && stats.keys === 2, JSON.stringify(stats));
      for (const c of conns.splice(0)) c.close();
      await until(async () => (await server.stats()).waiters === 0, 1000, "the waiters to leave");
    } finally {
      for (const c of conns) c.close();
      await a.close();
      await server.close();
    }
  });
}

Deno.test("status server: a body is refused (413) and the endpoint still answers", async () => {
  const server = await startStatusServer({
    port: 0,
    token: TOKEN,
    status: () => ({ ok: true }),
    metrics: () => "",
  });
  try {
    const head = `POST /status HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\n` +
      `content-length: ${1 << 30}\r\n\r\n`;
    assert.match(await rawStatus(server.port, head), /^HTTP\/1\.1 413 /);
    const res = await fetch(`http://127.0.0.1:${server.port}/status`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.deepEqual(await res.json(), { ok: true });
  } finally {
    await server.close();
  }
});
