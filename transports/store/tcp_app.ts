/**
 * @module
 * The Hono application of the store server: the session hello, the middleware that admits only signed
 * requests and signs their answers (tcp_sessions.ts), and one route per Store operation over a
 * MemoryStore, with `get`/`wait` long-polling server-side. Serving it is tcp_server.ts's job.
 *
 * A long-poll waits at most the server's `maxWaitMs` (a longer or infinite `timeout=` is clamped; the
 * client asks again), and leaves as soon as its client hangs up (`request.signal`, aborted by the
 * bounded server's connection).
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { InvalidArgumentError, StoreError, StoreTimeoutError } from "../../errors.ts";
import type { MemoryStore } from "./memory_store.ts";
import { API, AUTH_SCHEME, HELLO_PATH, MAC_HEADER, parseAuth, unframeCompareSet } from "./tcp_protocol.ts";
import { SessionTable } from "./tcp_sessions.ts";

const OCTETS = { "content-type": "application/octet-stream" };

/**
 * Builds the routes of the store server over `mem`; every request must be signed in a session of
 * `token`. Long-polls wait at most `maxWaitMs`.
 */
export function storeApp(mem: MemoryStore, token: string, maxWaitMs: number): Hono {
  const app = new Hono();
  // Unknown paths and unauthenticated requests get one and the same answer.
  app.notFound(unauthorized);
  app.onError((err, c) => {
    const text = err instanceof Error ? err.message : String(err);
    if (err instanceof InvalidArgumentError) return c.text(text, 400);
    if (mem.closed) return c.text(text, 503);
    if (err instanceof StoreError) return c.text(text, 409);
    return c.text(text, 500);
  });
  app.use("*", sessions(new SessionTable(token)));
  routes(app.basePath(API), mem, maxWaitMs);
  return app;
}

/** The one answer to anything unauthenticated or unknown. */
function unauthorized(c: Context): Response {
  return c.text("unauthorized", 401, { "www-authenticate": AUTH_SCHEME });
}

/** Answers hellos; admits signed requests only, and signs what they are answered. */
function sessions(table: SessionTable): MiddlewareHandler {
  return async (c, next) => {
    const url = new URL(c.req.url);
    if (c.req.method === "POST" && url.pathname === HELLO_PATH) {
      const answer = await table.hello(new Uint8Array(await c.req.arrayBuffer()));
      return answer === undefined ? unauthorized(c) : c.body(answer, 200, OCTETS);
    }
    const auth = parseAuth(c.req.header("authorization"));
    if (auth === undefined) return unauthorized(c);
    const body = new Uint8Array(await c.req.arrayBuffer());
    const session = await table.admit(auth, c.req.method, url.pathname + url.search, body);
    if (session === undefined) return unauthorized(c);
    await next();
    const answer = new Uint8Array(await c.res.clone().arrayBuffer());
    c.res.headers.set(MAC_HEADER, await table.sign(session, auth.counter, c.res.status, answer));
  };
}

/** One route per Store operation (registered on the root app's router). */
function routes(app: Hono, mem: MemoryStore, maxWaitMs: number): void {
  app.put("/kv/:key", async (c) => {
    await mem.set(c.req.param("key"), new Uint8Array(await c.req.arrayBuffer()));
    return c.body(null, 204);
  });

  app.get("/kv/:key", async (c) => {
    const key = c.req.param("key");
    try {
      const value = await mem.get(key, timeoutParam(c, maxWaitMs), c.req.raw.signal);
      return c.body(value, 200, OCTETS);
    } catch (err) {
      if (err instanceof StoreTimeoutError) return c.json({ missing: [key] }, 408);
      throw err;
    }
  });

  app.delete("/kv/:key", async (c) => c.json(await mem.deleteKey(c.req.param("key"))));

  app.post("/add/:key", async (c) => {
    const amount = Number(c.req.query("amount"));
    return c.text(String(await mem.add(c.req.param("key"), amount)));
  });

  app.post("/cas/:key", async (c) => {
    const parts = unframeCompareSet(new Uint8Array(await c.req.arrayBuffer()));
    if (parts === undefined) {
      throw new InvalidArgumentError("malformed compare-set body", { op: "store.compareSet" });
    }
    const value = await mem.compareSet(c.req.param("key"), parts.expected, parts.desired);
    return c.body(value, 200, OCTETS);
  });

  app.post("/wait", async (c) => {
    const keys = await keysBody(c);
    try {
      await mem.wait(keys, timeoutParam(c, maxWaitMs), c.req.raw.signal);
      return c.body(null, 204);
    } catch (err) {
      if (!(err instanceof StoreTimeoutError)) throw err;
      const missing: string[] = [];
      for (const key of keys) if (!(await mem.check([key]))) missing.push(key);
      return c.json({ missing }, 408);
    }
  });

  app.post("/check", async (c) => c.json(await mem.check(await keysBody(c))));

  app.get("/num-keys", async (c) => c.json(await mem.numKeys()));
}

/** The `timeout=` of a long-poll, clamped to `max` (so no waiter outlives it). */
function timeoutParam(c: Context, max: number): number {
  const raw = c.req.query("timeout");
  const ms = Number(raw);
  if (raw === undefined || raw === "" || !(ms >= 0)) {
    throw new InvalidArgumentError(`bad timeout ${JSON.stringify(raw)}`, { op: "store server" });
  }
  return Math.min(ms, max);
}

async function keysBody(c: Context): Promise<string[]> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    body = undefined;
  }
  const keys = (body as { keys?: unknown } | undefined)?.keys;
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
    throw new InvalidArgumentError('expected a JSON body {"keys": [string, ...]}', { op: "store server" });
  }
  return keys;
}
