/**
 * @module
 * The Hono application of the store server: token middleware and one route per Store operation over
 * a MemoryStore, with `get`/`wait` long-polling server-side. Serving it is tcp_server.ts's job.
 *
 * A long-poll waits at most the server's `maxWaitMs` (a longer or infinite `timeout=` is clamped; the
 * client asks again), and leaves as soon as its client hangs up (`request.signal`, aborted by the
 * bounded server's connection).
 */

import { type Context, Hono } from "hono";
import { InvalidArgumentError, StoreError, StoreTimeoutError } from "../../errors.ts";
import type { MemoryStore } from "./memory_store.ts";
import { API, unframeCompareSet } from "./tcp_protocol.ts";
import { requireToken } from "../http_serve.ts";

const OCTETS = { "content-type": "application/octet-stream" };

/**
 * Builds the routes of the store server over `mem`; every request must carry `token`. Long-polls wait
 * at most `maxWaitMs`.
 */
export function storeApp(mem: MemoryStore, token: string, maxWaitMs: number): Hono {
  const app = new Hono().basePath(API);

  app.use("*", requireToken(token));

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

  app.onError((err, c) => {
    const text = err instanceof Error ? err.message : String(err);
    if (err instanceof InvalidArgumentError) return c.text(text, 400);
    if (mem.closed) return c.text(text, 503);
    if (err instanceof StoreError) return c.text(text, 409);
    return c.text(text, 500);
  });

  return app;
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
