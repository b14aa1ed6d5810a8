/**
 * @module
 * choir's bounded HTTP/1.1 server on its own, over raw sockets and fetch: keep-alive and pipelined
 * requests, HEAD, `Expect: 100-continue`, the refusals (400, 413, 431, 501) and the deadlines (a head
 * that never completes, an idle connection), and close() with a request still running.
 */

import assert from "node:assert/strict";
import { BoundedHttpServer, type HttpLimits, resolveLimits } from "../../transports/http/server.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Echoes method, path and body; `/slow` answers after 300 ms; `/hang` waits for the client to leave. */
async function handler(req: Request): Promise<Response> {
  const url = new URL(req.url);
  if (url.pathname === "/slow") await new Promise((r) => setTimeout(r, 300));
  if (url.pathname === "/hang") {
    await new Promise((r) => req.signal.addEventListener("abort", r, { once: true }));
    return new Response("left");
  }
  const body = req.method === "GET" || req.method === "HEAD" ? "" : await req.text();
  return new Response(`${req.method} ${url.pathname}${url.search} ${body}`, { headers: { "x-seen": "1" } });
}

function start(limits: HttpLimits = {}): BoundedHttpServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return new BoundedHttpServer(
    listener,
    handler,
    resolveLimits({ maxConnections: 64, maxBodyBytes: 1024 }, limits),
  );
}

/** Writes `text` on `conn` and reads until `done(answer)` or the server closes; returns what came. */
async function exchange(
  conn: Deno.Conn,
  text: string,
  done: (s: string) => boolean,
  ms = 3000,
): Promise<string> {
  if (text) await conn.write(enc.encode(text));
  let got = "";
  const buf = new Uint8Array(65536);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    while (!done(got)) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += dec.decode(buf.subarray(0, n));
    }
  } catch {
    /* closed by the timer */
  } finally {
    clearTimeout(timer);
  }
  return got;
}

Deno.test("http server: fetch, keep-alive and pipelined requests, HEAD", async () => {
  const server = start();
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const res = await fetch(`${base}/a?x=1`, { method: "POST", body: "hello" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-seen"), "1");
    assert.equal(await res.text(), "POST /a?x=1 hello");
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const two =
      "GET /one HTTP/1.1\r\nhost: x\r\n\r\nPUT /two HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc";
    const got = await exchange(conn, two, (s) => s.includes("PUT /two abc"));
    assert.match(got, /GET \/one [\s\S]*PUT \/two abc/);
    const head = await exchange(conn, "HEAD /h HTTP/1.1\r\nhost: x\r\n\r\n", (s) => s.includes("\r\n\r\n"));
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n[\s\S]*content-length: 8\r\n\r\n$/);
    conn.close();
  } finally {
    await server.close();
  }
});

Deno.test("http server: Expect 100-continue, then the body", async () => {
  const server = start();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    const first = await exchange(
      conn,
      "POST /e HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n",
      (s) => s.includes("100 Continue\r\n\r\n"),
    );
    assert.match(first, /^HTTP\/1\.1 100 Continue/);
    assert.match(await exchange(conn, "ok", (s) => s.includes("POST /e ok")), /POST \/e ok/);
  } finally {
    conn.close();
    await server.close();
  }
});

Deno.test("http server: malformed, oversized and chunked requests are refused and the connection closed", async () => {
  const server = start({ maxHeadBytes: 2048 });
  try {
    const cases: [string, RegExp][] = [
      ["NOT A REQUEST\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET /x HTTP/1.1\r\n folded: yes\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET /x HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", /^HTTP\/1\.1 501 /],
      ["POST /x HTTP/1.1\r\ncontent-length: 5000\r\n\r\n", /^HTTP\/1\.1 413 /],
      [`GET /x HTTP/1.1\r\nx-big: ${"b".repeat(4000)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
      ["GET /x HTTP/2.0\r\n\r\n", /^HTTP\/1\.1 505 /],
    ];
    for (const [request, want] of cases) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      const got = await exchange(conn, request, () => false);
      conn.close();
      assert.match(got, want, JSON.stringify(request.slice(0, 60)));
      assert.match(got, /connection: close/);
    }
    // The server still serves.
    assert.equal(await (await fetch(`http://127.0.0.1:${server.port}/ok`)).text(), "GET /ok ");
  } finally {
    await server.close();
  }
});

Deno.test("http server: a head that never completes and an idle connection are closed at their deadlines", async () => {
  const server = start({ headTimeoutMs: 300, idleTimeoutMs: 600 });
  try {
    const slow = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const t0 = Date.now();
    await exchange(slow, "GET /x HTTP/1.1\r\nhost: x\r\n", () => false, 5000);
    assert.ok(Date.now() - t0 < 2000, `slow head closed after ${Date.now() - t0} ms`);
    slow.close();
    const idle = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await exchange(idle, "GET /x HTTP/1.1\r\nhost: x\r\n\r\n", (s) => s.includes("GET /x"));
    const t1 = Date.now();
    await exchange(idle, "", () => false, 5000);
    const idleFor = Date.now() - t1;
    assert.ok(idleFor >= 400 && idleFor < 2500, `idle connection closed after ${idleFor} ms`);
    idle.close();
    assert.equal(server.connections, 0);
  } finally {
    await server.close();
  }
});

Deno.test("http server: a client that hangs up aborts request.signal; close() waits for running requests", async () => {
  const server = start();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await conn.write(enc.encode("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n"));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(server.connections, 1);
    conn.close();
    const end = Date.now() + 2000;
    while (server.connections > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.equal(server.connections, 0, "the hung-up request ended");
    const slow = fetch(`http://127.0.0.1:${server.port}/slow`);
    await new Promise((r) => setTimeout(r, 100));
    await server.close();
    const res = await slow;
    assert.equal(await res.text(), "GET /slow ");
    assert.equal(res.headers.get("connection"), "close");
  } finally {
    await server.close();
  }
});
