/**
 * @module
 * The store server's application: the session hello, admission of signed requests only with signed
 * answers (tcp_sessions.ts), and one route per Store operation over a MemoryStore, with
 * `get`/`wait`/`mget`/`watch` long-polling server-side, plus the counters of every request (`/stats`).
 * It is served raw (http/raw.ts: head and body bytes in, status and bytes out), because every rank's
 * start-up goes through it: at 1,024 ranks the fetch `Request`/`Response` objects and the router of a
 * Hono app cost about as much as the rest of each request. Serving it is tcp_server.ts's job.
 *
 * A long-poll waits at most the server's `maxWaitMs` (a longer or infinite `timeout=` is clamped; the
 * client asks again), and leaves as soon as its client hangs up (`request.signal`, aborted by the
 * bounded server's connection).
 */

import { InvalidArgumentError, StoreError, StoreTimeoutError } from "../../errors.ts";
import { rawHeader, type RawHttpApp, type RawHttpRequest, type RawHttpResponse } from "../http/raw.ts";
import type { MemoryStore } from "./memory_store.ts";
import type { Arrival, Gathering } from "./store.ts";
import { badGathering, encodeTable, gatherCountKey, gatherKey, gatherTableKey } from "./all_gather.ts";
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
import { type Session, SessionTable } from "./tcp_sessions.ts";

const OCTETS = { "content-type": "application/octet-stream" };
const JSON_TYPE = { "content-type": "application/json" };
const enc = new TextEncoder();
const dec = new TextDecoder();

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
 * Builds the store server's application over `mem`; every request must be signed in a session of
 * `token`. Long-polls wait at most `maxWaitMs`. Every request is counted into `counters.stats`
 * (`keys`, `waiters` and the connections are filled in by the `/stats` route).
 */
export function storeApp(
  mem: MemoryStore,
  token: string,
  maxWaitMs: number,
  counters: StoreAppCounters = { stats: newStoreStats() },
): RawHttpApp {
  const stats = counters.stats;
  const table = new SessionTable(token);
  const route = routes(mem, maxWaitMs, counters);
  return {
    async raw(req) {
      const q = req.target.indexOf("?");
      const path = q < 0 ? req.target : req.target.slice(0, q);
      const name = routeName(req.method, path);
      stats.requests++;
      stats.byRoute[name] = (stats.byRoute[name] ?? 0) + 1;
      stats.peakInFlight = Math.max(stats.peakInFlight, ++stats.inFlight);
      let answer: RawHttpResponse;
      try {
        answer = await admitted(req, path, q < 0 ? "" : req.target.slice(q + 1));
      } finally {
        stats.inFlight--;
      }
      // A server shutting down tells each client to drop the connection it answered on, so that no client
      // sends its next request (perhaps one that cannot be sent twice) on a connection about to close.
      return mem.closed ? { ...answer, close: true } : answer;
    },
  };

  /** The answer to a request that passed the session check, signed; or the refusal. */
  async function admitted(req: RawHttpRequest, path: string, query: string): Promise<RawHttpResponse> {
    if (req.method === "POST" && path === HELLO_PATH) {
      const answer = table.hello(req.body);
      return answer === undefined ? UNAUTHORIZED : { status: 200, headers: OCTETS, body: answer };
    }
    const auth = parseAuth(rawHeader(req, "authorization"));
    if (auth === undefined) return UNAUTHORIZED;
    const session: Session | undefined = table.admit(auth, req.method, req.target, req.body);
    if (session === undefined) return UNAUTHORIZED;
    let answer: RawHttpResponse;
    try {
      answer = await route(req, path, new URLSearchParams(query)) ?? UNAUTHORIZED;
    } catch (err) {
      answer = failure(err, mem.closed);
    }
    const body = answer.body ?? new Uint8Array(0);
    const mac = table.sign(session, auth.counter, answer.status, body);
    return { ...answer, headers: { ...answer.headers, [MAC_HEADER]: mac } };
  }
}

/** The one answer to anything unauthenticated or unknown. */
const UNAUTHORIZED: RawHttpResponse = {
  status: 401,
  headers: { "content-type": "text/plain; charset=utf-8", "www-authenticate": AUTH_SCHEME },
  body: enc.encode("unauthorized"),
};

/** The answer to an operation that threw. */
function failure(err: unknown, closed: boolean): RawHttpResponse {
  const text = err instanceof Error ? err.message : String(err);
  const status = err instanceof InvalidArgumentError
    ? 400
    : closed
    ? 503
    : err instanceof StoreError
    ? 409
    : 500;
  return { status, headers: { "content-type": "text/plain; charset=utf-8" }, body: enc.encode(text) };
}

function json(value: unknown, status = 200): RawHttpResponse {
  return { status, headers: JSON_TYPE, body: enc.encode(JSON.stringify(value)) };
}

function bytes(value: Uint8Array): RawHttpResponse {
  return { status: 200, headers: OCTETS, body: value };
}

const NO_CONTENT: RawHttpResponse = { status: 204 };

/** Routes one admitted request; undefined for an unknown route. */
function routes(
  mem: MemoryStore,
  maxWaitMs: number,
  counters: StoreAppCounters,
): (req: RawHttpRequest, path: string, query: URLSearchParams) => Promise<RawHttpResponse | undefined> {
  return async (req, path, query) => {
    if (!path.startsWith(API + "/")) return undefined;
    const rest = path.slice(API.length + 1);
    const slash = rest.indexOf("/");
    const head = slash < 0 ? rest : rest.slice(0, slash);
    const key = slash < 0 ? undefined : keyParam(rest.slice(slash + 1));
    const m = req.method;
    if (key !== undefined) {
      if (head === "kv" && m === "PUT") {
        await mem.set(key, req.body);
        return NO_CONTENT;
      }
      if (head === "kv" && m === "GET") {
        try {
          return bytes(await mem.get(key, timeoutParam(query, maxWaitMs), req.signal));
        } catch (err) {
          if (err instanceof StoreTimeoutError) return json({ missing: [key] }, 408);
          throw err;
        }
      }
      if (head === "kv" && m === "DELETE") return json(await mem.deleteKey(key));
      if (head === "add" && m === "POST") {
        const amount = Number(query.get("amount"));
        return {
          status: 200,
          headers: { "content-type": "text/plain" },
          body: enc.encode(String(await mem.add(key, amount))),
        };
      }
      if (head === "cas" && m === "POST") {
        const parts = unframeCompareSet(req.body);
        if (parts === undefined) {
          throw new InvalidArgumentError("malformed compare-set body", { op: "store.compareSet" });
        }
        return bytes(await mem.compareSet(key, parts.expected, parts.desired));
      }
      return undefined;
    }
    if (slash >= 0) return undefined;
    if (m === "POST" && head === "wait") {
      const keys = keysBody(req.body);
      try {
        await mem.wait(keys, timeoutParam(query, maxWaitMs), req.signal);
        return NO_CONTENT;
      } catch (err) {
        if (!(err instanceof StoreTimeoutError)) throw err;
        const missing: string[] = [];
        for (const k of keys) if (!(await mem.check([k]))) missing.push(k);
        return json({ missing }, 408);
      }
    }
    if (m === "POST" && head === "check") return json(await mem.check(keysBody(req.body)));
    if (m === "GET" && head === "num-keys") return json(await mem.numKeys());
    if (m === "POST" && head === "mget") {
      const keys = keysBody(req.body);
      try {
        return bytes(frameValues(await mem.multiGet(keys, timeoutParam(query, maxWaitMs), req.signal)));
      } catch (err) {
        if (!(err instanceof StoreTimeoutError)) throw err;
        return json({ missing: keys.filter((k, i) => keys.indexOf(k) === i && !mem.has(k)) }, 408);
      }
    }
    // A server-side watch never keeps the server alive on its own (it is listening anyway).
    if (m === "POST" && head === "watch") {
      const keys = keysBody(req.body);
      const timeoutMs = timeoutParam(query, maxWaitMs);
      return json({ set: await mem.watch(keys, timeoutMs, { background: true, signal: req.signal }) });
    }
    // A rank's arrival at a counted barrier in one request (Store.arrive). Sent again (a kept connection
    // that closed unanswered, then a fresh session), the same claim is not counted twice.
    if (m === "POST" && head === "arrive") {
      const a = arrivalBody(req.body);
      const timeoutMs = timeoutParam(query, maxWaitMs);
      const repeated = mem.has(a.claimKey);
      const held = dec.decode(await mem.compareSet(a.claimKey, "", a.claim));
      if (held !== a.claim) return json({ held, set: null });
      if (!repeated && (await mem.add(a.counterKey, 1)) >= a.size) await mem.set(a.doneKey, "1");
      const set = await mem.watch(a.watchKeys, timeoutMs, { background: true, signal: req.signal });
      return json({ held, set });
    }
    // A rank's part of an all-gather in one request (Store.gather): its value is set and counted once (a
    // request sent again is not counted twice); the request that completes the count builds the table
    // once, and every waiter is answered with it.
    if (m === "POST" && head === "gather") {
      const g = gatheringBody(req.body);
      const timeoutMs = timeoutParam(query, maxWaitMs);
      const own = gatherKey(g.tag, g.rank);
      const table = gatherTableKey(g.tag);
      if (!mem.has(own)) {
        await mem.set(own, g.value);
        if ((await mem.add(gatherCountKey(g.tag), 1)) === g.size) {
          const keys = Array.from({ length: g.size }, (_, r) => gatherKey(g.tag, r));
          const all = (await mem.multiGet(keys, 0)).map((v) => dec.decode(v));
          await mem.set(table, encodeTable(all));
        }
      }
      try {
        return bytes(await mem.get(table, timeoutMs, req.signal));
      } catch (err) {
        if (!(err instanceof StoreTimeoutError)) throw err;
        const missing: string[] = [];
        for (let r = 0; r < g.size; r++) if (!mem.has(gatherKey(g.tag, r))) missing.push(gatherKey(g.tag, r));
        return json({ missing }, 408);
      }
    }
    if (m === "GET" && head === "stats") {
      const stats = counters.stats;
      const live = counters.connections?.() ?? { connections: 0, connectionsSeen: 0 };
      return json(
        { ...stats, ...live, waiters: mem.waiting, keys: await mem.numKeys() } satisfies StoreStats,
      );
    }
    return undefined;
  };
}

/** A key from its one url-encoded path segment; undefined when it is not one segment. */
function keyParam(segment: string): string | undefined {
  if (segment.length === 0 || segment.includes("/")) return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new InvalidArgumentError(`malformed key ${JSON.stringify(segment)}`, { op: "store server" });
  }
}

/** The route of a request for the counters: `kv.get`, `add`, `mget`, `hello`, ... */
function routeName(method: string, path: string): string {
  const head = path.startsWith(API + "/") ? path.slice(API.length + 1).split("/")[0] || "?" : "?";
  return head === "kv" ? `kv.${method.toLowerCase()}` : head;
}

/** The `timeout=` of a long-poll, clamped to `max` (so no waiter outlives it). */
function timeoutParam(query: URLSearchParams, max: number): number {
  const raw = query.get("timeout");
  const ms = Number(raw);
  if (raw === null || raw === "" || !(ms >= 0)) {
    throw new InvalidArgumentError(`bad timeout ${JSON.stringify(raw ?? undefined)}`, { op: "store server" });
  }
  return Math.min(ms, max);
}

/** The {@link Arrival} of an `arrive` body; InvalidArgumentError (400) when it is not one. */
function arrivalBody(body: Uint8Array): Arrival {
  let v: Partial<Record<keyof Arrival, unknown>> | undefined;
  try {
    v = JSON.parse(dec.decode(body));
  } catch {
    v = undefined;
  }
  const str = (x: unknown): x is string => typeof x === "string" && x.length > 0;
  if (
    !v || !str(v.claimKey) || !str(v.claim) || !str(v.counterKey) || !str(v.doneKey) ||
    !Number.isSafeInteger(v.size) || !Array.isArray(v.watchKeys) || !v.watchKeys.every(str)
  ) {
    throw new InvalidArgumentError("malformed arrive body", { op: "store server" });
  }
  return v as Arrival;
}

/** The {@link Gathering} of a `gather` body; InvalidArgumentError (400) when it is not one. */
function gatheringBody(body: Uint8Array): Gathering {
  let v: Gathering | undefined;
  try {
    v = JSON.parse(dec.decode(body));
  } catch {
    v = undefined;
  }
  const bad = v && typeof v === "object" ? badGathering(v) : "not an object";
  if (!v || bad !== null) {
    throw new InvalidArgumentError(`malformed gather body: ${bad}`, { op: "store server" });
  }
  return { tag: v.tag, rank: v.rank, size: v.size, value: v.value };
}

function keysBody(body: Uint8Array): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(dec.decode(body));
  } catch {
    parsed = undefined;
  }
  const keys = (parsed as { keys?: unknown } | undefined)?.keys;
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
    throw new InvalidArgumentError('expected a JSON body {"keys": [string, ...]}', { op: "store server" });
  }
  return keys;
}
