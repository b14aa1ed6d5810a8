/**
 * @module
 * The Hono application of the store server: token middleware and one route per Store operation over
 * a MemoryStore, with `get`/`wait` long-polling server-side. Serving it is tcp_server.ts's job.
 *
 * Long-polls do not watch `request.signal` (Deno.serve's legacy abort semantics print a warning): a
 * poll abandoned by its client lasts until its own timeout or the server's close, whichever is first.
 */

import { type Context, Hono } from "hono";
import { InvalidArgumentError, StoreError, StoreTimeoutError } from "../../errors.ts";
import type { MemoryStore } from "./memory_store.ts";
import { API, frameValues, type StoreStats, unframeCompareSet } from "./tcp_protocol.ts";
import { requireToken } from "../http_serve.ts";

const OCTETS = { "content-type": "application/octet-stream" };

/** Fresh counters for {@link storeApp}. */
export function newStoreStats(): StoreStats {
  return { requests: 0, byRoute: {}, inFlight: 0, peakInFlight: 0, connections: 0, keys: 0 };
}

/**
 * Builds the routes of the store server over `mem`; every request must carry `token`. Every request is
 * counted into `stats` (`keys` is filled in by the `/stats` route).
 */
export function storeApp(mem: MemoryStore, token: string, stats: StoreStats = newStoreStats()): Hono {
  const app = new Hono().basePath(API);
  const seen = new Set<string>();

  app.use("*", async (c, next) => {
    const route = routeName(c.req.method, c.req.path);
    stats.requests++;
    stats.byRoute[route] = (stats.byRoute[route] ?? 0) + 1;
    const peer = (c.env as { remoteAddr?: Deno.NetAddr } | undefined)?.remoteAddr;
    if (peer) {
      seen.add(`${peer.hostname}:${peer.port}`);
      stats.connections = seen.size;
    }
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

  app.use("*", requireToken(token));

  app.put("/kv/:key", async (c) => {
    await mem.set(c.req.param("key"), new Uint8Array(await c.req.arrayBuffer()));
    return c.body(null, 204);
  });

  app.get("/kv/:key", async (c) => {
    const key = c.req.param("key");
    try {
      const value = await mem.get(key, timeoutParam(c));
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
      await mem.wait(keys, timeoutParam(c));
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
      return c.body(frameValues(await mem.multiGet(keys, timeoutParam(c))), 200, OCTETS);
    } catch (err) {
      if (!(err instanceof StoreTimeoutError)) throw err;
      return c.json({ missing: keys.filter((k, i) => keys.indexOf(k) === i && !mem.has(k)) }, 408);
    }
  });

  // A server-side watch never keeps the server alive on its own (it is listening anyway).
  app.post("/watch", async (c) => {
    const keys = await keysBody(c);
    return c.json({ set: await mem.watch(keys, timeoutParam(c), { background: true }) });
  });

  app.get("/stats", async (c) => c.json({ ...stats, keys: await mem.numKeys() }));

  app.onError((err, c) => {
    const text = err instanceof Error ? err.message : String(err);
    if (err instanceof InvalidArgumentError) return c.text(text, 400);
    if (mem.closed) return c.text(text, 503);
    if (err instanceof StoreError) return c.text(text, 409);
    return c.text(text, 500);
  });

  return app;
}

/** The route of a request for the counters: `kv.get`, `add`, `mget`, ... */
function routeName(method: string, path: string): string {
  const head = path.slice(API.length + 1).split("/")[0] || "?";
  return head === "kv" ? `kv.${method.toLowerCase()}` : head;
}

function timeoutParam(c: Context): number {
  const raw = c.req.query("timeout");
  const ms = Number(raw);
  if (raw === undefined || raw === "" || !(ms >= 0)) {
    throw new InvalidArgumentError(`bad timeout ${JSON.stringify(raw)}`, { op: "store server" });
  }
  return ms;
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
