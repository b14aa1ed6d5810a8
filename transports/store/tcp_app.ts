/**
 * @module
 * The Hono application of the store server: the session hello, the middleware that admits only signed
 * requests and signs their answers (tcp_sessions.ts), and one route per Store operation over a
 * MemoryStore, with `get`/`wait`/`mget`/`watch` long-polling server-side, plus the counters of every
 * request (`/stats`). Serving it is tcp_server.ts's job.
 *
 * A long-poll waits at most the server's `maxWaitMs` (a longer or infinite `timeout=` is clamped; the
 * client asks again), and leaves as soon as its client hangs up (`request.signal`, aborted by the
 * bounded server's connection).
 */

import { type Context, Hono, type MiddlewareHandler } from "hono";
import { InvalidArgumentError, StoreError, StoreTimeoutError } from "../../errors.ts";
import type { MemoryStore } from "./memory_store.ts";
import {
  API,
  AUTH_SCHEME,
  frameValues,
  HELLO_PATH,
  MAC_HEADER,
  parseAuth,
  type StoreStats,
  unframeCompareSet,
} from "./tcp_protocol.ts";
import { SessionTable } from "./tcp_sessions.ts";

const OCTETS = { "content-type": "application/octet-stream" };

/** What the server around the app knows of its connections, for the counters. */
export interface ConnectionCounts {
  /** Connections open now. */
  connections: number;
  /** Connections accepted since the start. */
  connectionsSeen: number;
}

/** Fresh counters for {@link storeApp}. */
export function newStoreStats(): StoreStats {
  return {
    requests: 0,
    byRoute: {},
    inFlight: 0,
    peakInFlight: 0,
    connections: 0,
    connectionsSeen: 0,
    waiters: 0,
    keys: 0,
  };
}

/** How {@link storeApp} counts what it serves. */
export interface StoreAppCounters {
  /** Counted into: every request (refused ones included), by route, and the requests at once. */
  stats: StoreStats;
  /** The serving connections' counts, read by the `/stats` route. */
  connections?: () => ConnectionCounts;
}

/**
 * Builds the routes of the store server over `mem`; every request must be signed in a session of
 * `token`. Long-polls wait at most `maxWaitMs`. Every request is counted into `counters.stats`
 * (`keys`, `waiters` and the connections are filled in by the `/stats` route).
 */
export function storeApp(
  mem: MemoryStore,
  token: string,
  maxWaitMs: number,
  counters: StoreAppCounters = { stats: newStoreStats() },
): Hono {
  const app = new Hono();
  const stats = counters.stats;
  // Unknown paths and unauthenticated requests get one and the same answer.
  app.notFound(unauthorized);
  app.onError((err, c) => {
    const text = err instanceof Error ? err.message : String(err);
    if (err instanceof InvalidArgumentError) return c.text(text, 400);
    if (mem.closed) return c.text(text, 503);
    if (err instanceof StoreError) return c.text(text, 409);
    return c.text(text, 500);
  });
  app.use("*", async (c, next) => {
    const route = routeName(c.req.method, c.req.path);
    stats.requests++;
    stats.byRoute[route] = (stats.byRoute[route] ?? 0) + 1;
    stats.peakInFlight = Math.max(stats.peakInFlight, ++stats.inFlight);
    try {
      await next();
    } finally {
      stats.inFlight--;
    }
    // A server shutting down tells each client to drop the connection it answered on, so that no client
    // sends its next request (perhaps one that cannot be sent twice) on a connection about to close.
    if (mem.closed) c.res.headers.set("connection", "close");
  });
  app.use("*", sessions(new SessionTable(token)));
  routes(app.basePath(API), mem, maxWaitMs);
  app.get(`${API}/stats`, async (c) => {
    const live = counters.connections?.() ?? { connections: 0, connectionsSeen: 0 };
    return c.json(
      { ...stats, ...live, waiters: mem.waiting, keys: await mem.numKeys() } satisfies StoreStats,
    );
  });
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

  app.post("/mget", async (c) => {
    const keys = await keysBody(c);
    try {
      const values = await mem.multiGet(keys, timeoutParam(c, maxWaitMs), c.req.raw.signal);
      return c.body(frameValues(values), 200, OCTETS);
    } catch (err) {
      if (!(err instanceof StoreTimeoutError)) throw err;
      return c.json({ missing: keys.filter((k, i) => keys.indexOf(k) === i && !mem.has(k)) }, 408);
    }
  });

  // A server-side watch never keeps the server alive on its own (it is listening anyway).
  app.post("/watch", async (c) => {
    const keys = await keysBody(c);
    const timeoutMs = timeoutParam(c, maxWaitMs);
    return c.json({ set: await mem.watch(keys, timeoutMs, { background: true, signal: c.req.raw.signal }) });
  });
}

/** The route of a request for the counters: `kv.get`, `add`, `mget`, `hello`, ... */
function routeName(method: string, path: string): string {
  const head = path.startsWith(API + "/") ? path.slice(API.length + 1).split("/")[0] || "?" : "?";
  return head === "kv" ? `kv.${method.toLowerCase()}` : head;
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
