/**
 * @module
 * TcpStore: the Store client of the store server: HTTP/1.1 over its own keep-alive connections
 * (raw_http.ts; about half the cost per request of `fetch`, and a background watch's connection can be
 * unref'd). `get`/`wait`/`multiGet`/`watch` long-poll on the server, each holding one connection while
 * it waits, and ask again across the server's clamp; the first contact retries refused connections until
 * its timeout. Every request is signed in a session whose server proved it holds the token
 * (tcp_session.ts), and every answer's signature is checked.
 */

import { AuthError, StoreError, StoreTimeoutError } from "../../errors.ts";
import { isPermissionDenied, netPermissionError } from "../permission.ts";
import { checkToken } from "../token.ts";
import type { Arrival, ArrivalResult, Gathered, Gathering, Store, WatchOptions } from "./store.ts";
import { badGathering, decodedOrThrow, gatherTableKey } from "./all_gather.ts";
import { API, frameCompareSet, HELLO_PATH, keyPath, MAC_HEADER, unframeValues } from "./tcp_protocol.ts";
import { type ClientSession, startHello } from "./tcp_session.ts";
import { KeptConn, type RawResponse } from "./raw_http.ts";
import {
  checkAmount,
  checkKey,
  checkTimeout,
  closedError,
  DEFAULT_STORE_TIMEOUT_MS,
  isUnbounded,
  sleep,
  toBytes,
  waitTimeout,
} from "./store_util.ts";

/** Options of a {@link TcpStore}. */
export interface TcpStoreOptions {
  /** Host of the store server. */
  host: string;
  /** Port of the store server. */
  port: number;
  /**
   * The job's secret. It is never sent: the server proves it holds it first, then every request is
   * signed with a key derived from it. An empty one is an InvalidArgumentError.
   */
  token: string;
  /** Default timeout of `get`/`wait`, and the timeout of every other request, in ms (default 300000). */
  timeoutMs?: number;
  /**
   * How long the first request retries a refused connection (the server may start a moment after
   * this rank), in ms; default `timeoutMs`. Later requests fail at once when the server is gone.
   */
  connectTimeoutMs?: number;
  /** The rank using this client, named in its errors. */
  rank?: number;
}

type Ctx = { rank?: number; op: string };

interface Call {
  method: "GET" | "PUT" | "POST" | "DELETE";
  path: string;
  body?: Uint8Array<ArrayBuffer> | string;
  /** For long-polls: how long the server should wait, in ms (sent as `?timeout=`). */
  waitMs?: number;
  /** For long-polls: the keys waited for, named if the client-side deadline passes. */
  keys?: string[];
  /** Only open the session (the hello): no request follows. */
  sessionOnly?: boolean;
}

/** Extra time a long-poll gives the server to answer 408 before the client aborts on its own. */
const LONG_POLL_SLACK_MS = 2_000;
/**
 * A real server answers a hello at once; one connected but silent this long is not one (an impostor
 * holding the port, or a hung server), ms.
 */
const HELLO_TIMEOUT_MS = 30_000;
const OCTETS = { "content-type": "application/octet-stream" };
/** Longest wait one long-poll asks for; servers clamp theirs (10 min by default), so ask again past it. */
const LONG_POLL_MAX_MS = 300_000;
const RETRY_MIN_MS = 10;
/** How long after a "shutting down" answer a request is asked once more. */
const SHUTDOWN_RETRY_MS = 100;
const RETRY_MAX_MS = 250;
/** Idle connections older than this are closed rather than reused (servers drop idle ones). */
const IDLE_MS = 10_000;
/** Idle connections kept for reuse; a burst of concurrent requests closes the rest when done. */
const IDLE_KEPT = 2;

/** A {@link Store} client of a server started by `startStoreServer`. */
export class TcpStore implements Store {
  /** Base URL of the server, e.g. `http://127.0.0.1:29500`. */
  readonly url: string;
  /** Default timeout of `get`/`wait` and of every other request, in ms. */
  readonly timeoutMs: number;
  /** The rank named in errors, if any. */
  readonly rank?: number;
  readonly #token: string;
  #session: Promise<ClientSession> | undefined;
  readonly #connectTimeoutMs: number;
  readonly #closing = new AbortController();
  readonly #inflight = new Set<Promise<unknown>>();
  /** Keep-alive connections: idle ones for the next request (most recent last); busy ones. */
  readonly #idle: KeptConn[] = [];
  readonly #busy = new Set<KeptConn>();
  readonly #host: string;
  readonly #port: number;
  #contacted = false;
  #closed = false;

  /** Creates a client; nothing is sent until the first call. */
  constructor(opts: TcpStoreOptions) {
    this.rank = opts.rank;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? this.timeoutMs;
    checkTimeout(this.timeoutMs, { rank: this.rank, op: "TcpStore" });
    checkToken(opts.token, { rank: this.rank, op: "TcpStore" });
    const host = opts.host.includes(":") && !opts.host.startsWith("[") ? `[${opts.host}]` : opts.host;
    this.url = `http://${host}:${opts.port}`;
    this.#token = opts.token;
    this.#host = opts.host;
    this.#port = opts.port;
  }

  /**
   * Opens this client's session without a request: the first contact, in which the server proves it holds
   * the token (AuthError when it does not), retried while the server refuses connections (it may start a
   * moment after this rank) until `connectTimeoutMs`. Nothing happens when a session is open. One
   * exchange where a `check([])` made two (hello, then the check).
   */
  async connect(): Promise<void> {
    await this.#call(this.#ctx("store.connect"), { method: "POST", path: HELLO_PATH, sessionOnly: true });
  }

  /** Sets `key` to `value`. */
  async set(key: string, value: Uint8Array | string): Promise<void> {
    const ctx = this.#ctx("store.set", key);
    await this.#call(ctx, { method: "PUT", path: keyPath("kv", key), body: toBytes(value) });
  }

  /** Returns the value of `key`; the server holds the request until it is set or `timeoutMs` passes. */
  async get(key: string, timeoutMs: number = this.timeoutMs): Promise<Uint8Array> {
    const ctx = this.#ctx("store.get", key);
    checkTimeout(timeoutMs, ctx);
    return await this.#call(ctx, { method: "GET", path: keyPath("kv", key), waitMs: timeoutMs, keys: [key] });
  }

  /** Adds `amount` to the counter at `key` (absent = 0), atomically on the server; returns the new value. */
  async add(key: string, amount: number): Promise<number> {
    const ctx = this.#ctx("store.add", key);
    checkAmount(amount, ctx);
    const path = `${keyPath("add", key)}?amount=${amount}`;
    const body = await this.#call(ctx, { method: "POST", path });
    return Number(new TextDecoder().decode(body));
  }

  /** Sets `key` to `desired` if it holds `expected` (empty = absent); returns the value afterwards. */
  async compareSet(
    key: string,
    expected: Uint8Array | string,
    desired: Uint8Array | string,
  ): Promise<Uint8Array> {
    const ctx = this.#ctx("store.compareSet", key);
    const body = frameCompareSet(toBytes(expected), toBytes(desired));
    return await this.#call(ctx, { method: "POST", path: keyPath("cas", key), body });
  }

  /** Waits until every key is set (one long-poll); StoreTimeoutError names the keys still missing. */
  async wait(keys: string[], timeoutMs: number = this.timeoutMs): Promise<void> {
    const ctx = this.#ctx("store.wait");
    for (const key of keys) checkKey(key, ctx);
    checkTimeout(timeoutMs, ctx);
    const body = JSON.stringify({ keys });
    await this.#call(ctx, { method: "POST", path: "/v1/wait", body, waitMs: timeoutMs, keys });
  }

  /** Returns the values of `keys` in one long-poll; StoreTimeoutError names the keys still missing. */
  async multiGet(keys: string[], timeoutMs: number = this.timeoutMs): Promise<Uint8Array[]> {
    const ctx = this.#ctx("store.multiGet");
    for (const key of keys) checkKey(key, ctx);
    checkTimeout(timeoutMs, ctx);
    if (keys.length === 0) return [];
    const body = JSON.stringify({ keys });
    const framed = await this.#call(ctx, {
      method: "POST",
      path: `${API}/mget`,
      body,
      waitMs: timeoutMs,
      keys,
    });
    const values = unframeValues(framed, keys.length);
    if (values === undefined) {
      throw new StoreError(`the store server at ${this.url} sent a garbled mget`, ctx);
    }
    return values;
  }

  /**
   * Returns which of `keys` are set once at least one is, or `[]` after `timeoutMs`, in one long-poll. A
   * `background` watch runs on a connection of its own that does not keep the process alive.
   */
  async watch(
    keys: string[],
    timeoutMs: number = this.timeoutMs,
    opts: WatchOptions = {},
  ): Promise<string[]> {
    const ctx = this.#ctx("store.watch");
    for (const key of keys) checkKey(key, ctx);
    checkTimeout(timeoutMs, ctx);
    if (keys.length === 0) return [];
    const body = JSON.stringify({ keys });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (opts.signal?.aborted) throw new StoreError("the watch was abandoned", ctx);
      const left = isUnbounded(timeoutMs) ? timeoutMs : Math.max(0, deadline - Date.now());
      const call: Call = { method: "POST", path: `${API}/watch`, body, waitMs: left };
      const answer = await this.#call(ctx, call, opts);
      const set = (JSON.parse(new TextDecoder().decode(answer)) as { set?: unknown }).set;
      if (!Array.isArray(set)) {
        throw new StoreError(`the store server at ${this.url} sent a garbled watch`, ctx);
      }
      // An empty answer before our own deadline is the server's longest wait (or ours per request)
      // passing: watch again.
      if (set.length > 0 || this.#closed || !(isUnbounded(timeoutMs) || deadline - Date.now() > 5)) {
        return set.map(String);
      }
    }
  }

  /**
   * An {@link Arrival} done by the server in one request (claim, count, watch); see {@link Store.arrive}.
   * An empty `set` may be the server's longest wait passing: the caller watches again for what is left.
   */
  async arrive(a: Arrival, timeoutMs: number = this.timeoutMs): Promise<ArrivalResult> {
    const ctx = this.#ctx("store.arrive", a.claimKey);
    for (const key of [a.claimKey, a.counterKey, a.doneKey, ...a.watchKeys]) checkKey(key, ctx);
    checkTimeout(timeoutMs, ctx);
    const body = JSON.stringify(a);
    const answer = await this.#call(ctx, { method: "POST", path: `${API}/arrive`, body, waitMs: timeoutMs });
    const r = JSON.parse(new TextDecoder().decode(answer)) as { held?: unknown; set?: unknown };
    if (typeof r.held !== "string" || !(r.set === null || Array.isArray(r.set))) {
      throw new StoreError(`the store server at ${this.url} sent a garbled arrive`, ctx);
    }
    return { held: r.held, set: r.set === null ? null : r.set.map(String) };
  }

  /**
   * A {@link Gathering} done by the server in one request: every rank's value once all `g.size` have
   * sent theirs; StoreTimeoutError names the keys of the ranks still missing at `timeoutMs`.
   */
  async gather(g: Gathering, timeoutMs: number = this.timeoutMs): Promise<Gathered> {
    const ctx = this.#ctx("store.gather");
    const bad = badGathering(g);
    if (bad !== null) throw new StoreError(`bad gathering: ${bad}`, { ...ctx, rank: g.rank });
    const table = gatherTableKey(g.tag);
    checkKey(table, ctx);
    checkTimeout(timeoutMs, ctx);
    const body = JSON.stringify({ tag: g.tag, rank: g.rank, size: g.size, value: g.value });
    const call: Call = { method: "POST", path: `${API}/gather`, body, waitMs: timeoutMs, keys: [table] };
    const answer = await this.#call(ctx, call);
    return decodedOrThrow(new TextDecoder().decode(answer), g, `the store server at ${this.url}`);
  }

  /** Returns whether every key in `keys` is set. */
  async check(keys: string[]): Promise<boolean> {
    const ctx = this.#ctx("store.check");
    for (const key of keys) checkKey(key, ctx);
    const body = await this.#call(ctx, { method: "POST", path: "/v1/check", body: JSON.stringify({ keys }) });
    return JSON.parse(new TextDecoder().decode(body)) === true;
  }

  /** Deletes `key`; returns whether it existed. */
  async deleteKey(key: string): Promise<boolean> {
    const ctx = this.#ctx("store.deleteKey", key);
    const body = await this.#call(ctx, { method: "DELETE", path: keyPath("kv", key) });
    return JSON.parse(new TextDecoder().decode(body)) === true;
  }

  /** The number of keys on the server. */
  async numKeys(): Promise<number> {
    const ctx = this.#ctx("store.numKeys");
    const body = await this.#call(ctx, { method: "GET", path: "/v1/num-keys" });
    return Number(JSON.parse(new TextDecoder().decode(body)));
  }

  /** Aborts pending requests (they fail with StoreError), then closes the connections. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    for (const c of [...this.#idle, ...this.#busy]) c.close();
    this.#idle.length = 0;
    await Promise.allSettled([...this.#inflight]);
  }

  #ctx(op: string, key?: string): Ctx {
    const ctx = { rank: this.rank, op };
    if (this.#closed) throw closedError(ctx);
    if (key !== undefined) checkKey(key, ctx);
    return ctx;
  }

  /** Runs one request, tracked so that `close()` can wait for it; resolves to the response body. */
  #call(ctx: Ctx, call: Call, opts: WatchOptions = {}): Promise<Uint8Array> {
    const p = this.#send(ctx, call, opts);
    this.#inflight.add(p);
    const forget = () => this.#inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  async #send(ctx: Ctx, call: Call, opts: WatchOptions): Promise<Uint8Array> {
    const start = Date.now();
    const waitDeadline = call.waitMs === undefined ? undefined : start + call.waitMs;
    for (let delay = RETRY_MIN_MS;; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      try {
        return await this.#attempt(ctx, call, waitDeadline, opts);
      } catch (err) {
        // A long-poll ends at the server's longest wait: poll again until our own deadline.
        if (err instanceof StoreTimeoutError && this.#pollsAgain(call, waitDeadline)) continue;
        if (!(err instanceof ConnectFailure)) throw err;
        const tried = Date.now() - start;
        if (this.#contacted || !err.connecting || tried >= this.#connectTimeoutMs) {
          const why = this.#contacted ? "it stopped answering" : `tried for ${tried} ms`;
          throw new StoreError(`cannot reach the store server at ${this.url} (${why}): ${err.message}`, {
            ...ctx,
            cause: err.cause,
          });
        }
        await sleep(Math.min(delay, this.#connectTimeoutMs - tried), this.#closing.signal, ctx);
      }
    }
  }

  /** Whether a long-poll that timed out on the server still has time of its own left. */
  #pollsAgain(call: Call, waitDeadline: number | undefined): boolean {
    if (waitDeadline === undefined || this.#closed) return false;
    return isUnbounded(call.waitMs!) || waitDeadline - Date.now() > 5;
  }

  /** An idle keep-alive connection still open and young enough to reuse, else null (the others are closed). */
  #takeIdle(): KeptConn | null {
    const now = Date.now();
    for (let idle = this.#idle.pop(); idle; idle = this.#idle.pop()) {
      if (!idle.dead && now - idle.since < IDLE_MS) return idle;
      idle.close();
    }
    return null;
  }

  /**
   * One request in this client's session (opening one first when there is none) with its own deadline;
   * a failed connection surfaces as ConnectFailure. A server that no longer knows the session (it was
   * restarted, or dropped it) gets one fresh session before the request is refused. A `background`
   * request's connection and timer are unref'd, so that it never keeps the process alive; `signal`
   * abandons it (its connection is closed).
   */
  async #attempt(
    ctx: Ctx,
    call: Call,
    waitDeadline: number | undefined,
    opts: WatchOptions,
  ): Promise<Uint8Array> {
    let path = call.path;
    let limitMs = this.timeoutMs;
    if (waitDeadline !== undefined) {
      const left = isUnbounded(call.waitMs!) ? Infinity : Math.max(0, waitDeadline - Date.now());
      const ask = Math.min(left, LONG_POLL_MAX_MS);
      path += `${path.includes("?") ? "&" : "?"}timeout=${ask}`;
      limitMs = ask + LONG_POLL_SLACK_MS;
    }
    const body = call.body === undefined ? new Uint8Array(0) : toBytes(call.body);
    let renewed = false;
    let askedAgain = false;
    for (;;) {
      const pending = this.#sessionFor(ctx);
      let session: ClientSession;
      let counter: number;
      let res: RawResponse;
      try {
        session = await pending;
        if (call.sessionOnly) return new Uint8Array(0);
        const h = this.#headers(session, call.method, path, body);
        counter = h.counter;
        res = await this.#exchange(ctx, call, { path, headers: h.headers, body }, limitMs, opts);
      } catch (err) {
        // Asked again after a "shutting down" answer and refused: the server went and none took its place.
        if (askedAgain && err instanceof ConnectFailure) {
          throw new StoreError(
            `the store at ${this.url.slice(7)} was lost: it shut down, and nothing answers there now`,
            { ...ctx, cause: err.cause },
          );
        }
        throw err;
      }
      if (res.status === 401) {
        if (this.#session === pending) this.#session = undefined;
        if (!renewed) {
          renewed = true;
          continue;
        }
        throw new AuthError(`the store server at ${this.url} refuses the requests of a fresh session`, ctx);
      }
      // A body over the server's cap is refused (413) by its HTTP layer before any session sees the
      // request, so that answer is unsigned; believing it costs nothing (it only makes this call fail).
      if (res.status === 413) throw this.#statusError(ctx, res.status, res.body, call);
      if (!session.verify(counter, res.status, res.body, res.headers.get(MAC_HEADER) ?? null)) {
        throw new AuthError(
          `an answer from the store server at ${this.url} is not signed by its session (changed on the way?)`,
          ctx,
        );
      }
      if (res.status >= 200 && res.status < 300) return res.body;
      // 503: the server is shutting down and did not run the request (its store is closed). A server
      // restarted on the same address (a relaunched launcher) may already be listening: ask once more,
      // shortly, on a fresh connection and session; a server that is simply gone then refuses it.
      if (res.status === 503 && !askedAgain && !this.#closed) {
        askedAgain = true;
        renewed = false;
        if (this.#session === pending) this.#session = undefined;
        await sleep(SHUTDOWN_RETRY_MS, this.#closing.signal, ctx);
        continue;
      }
      throw this.#statusError(ctx, res.status, res.body, call);
    }
  }

  /** This client's session, opening one (one hello at a time) when there is none. */
  #sessionFor(ctx: Ctx): Promise<ClientSession> {
    if (this.#session !== undefined) return this.#session;
    const opening = (async () => {
      const hello = startHello(this.#token);
      const limitMs = Math.min(this.timeoutMs, HELLO_TIMEOUT_MS);
      const req = { path: HELLO_PATH, headers: OCTETS, body: hello.body };
      // Never in the background: a foreground call may be waiting for this session too.
      const res = await this.#exchange(ctx, { method: "POST", path: HELLO_PATH }, req, limitMs, {});
      return hello.open(res.status, res.body, this.url.slice(7), ctx);
    })();
    this.#session = opening;
    opening.catch(() => {
      if (this.#session === opening) this.#session = undefined;
    });
    return opening;
  }

  /**
   * One HTTP exchange bounded by `limitMs`, on an idle connection or a new one (`fresh`); errors below
   * HTTP are typed (ConnectFailure, StoreError). A kept connection that closes without an answer is
   * tried once more on a new one: the same bytes, so the server refuses them (401) if it did run them.
   */
  async #exchange(
    ctx: Ctx,
    call: Call,
    req: { path: string; headers: Record<string, string>; body: Uint8Array },
    limitMs: number,
    opts: WatchOptions,
    fresh = false,
  ): Promise<RawResponse> {
    let kept = fresh ? null : this.#takeIdle();
    const reused = kept !== null;
    if (kept === null) {
      try {
        const conn = await Deno.connect({ hostname: this.#host, port: this.#port });
        conn.setNoDelay(true);
        kept = new KeptConn(conn);
      } catch (err) {
        if (this.#closed) throw closedError(ctx);
        if (isPermissionDenied(err)) {
          throw netPermissionError(
            `cannot reach the store at ${this.url}`,
            `--allow-net=${this.url.slice(7)}`,
            err,
            ctx,
          );
        }
        throw new ConnectFailure(err, true);
      }
    }
    const k = kept;
    const c = k.conn;
    if (this.#closed) {
      k.close();
      throw closedError(ctx);
    }
    this.#busy.add(k);
    if (opts.background) c.unref();
    else c.ref();
    let timedOut = false;
    const onAbort = () => k.close();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.signal?.aborted) onAbort(); // abandoned while the request was being signed
    const timer = isUnbounded(limitMs) ? undefined : setTimeout(() => {
      timedOut = true;
      k.close();
    }, limitMs);
    if (timer !== undefined && opts.background) Deno.unrefTimer(timer);
    try {
      const res = await k.exchange({
        method: call.method,
        path: req.path,
        host: this.url.slice(7),
        headers: req.headers,
        body: req.body,
      });
      this.#contacted = true;
      this.#busy.delete(k);
      // A server that answers 503 is shutting down: every connection to it goes.
      if (res.status === 503) { for (const idle of this.#idle.splice(0)) idle.close(); }
      if (res.close || res.status === 503 || this.#closed || this.#idle.length >= IDLE_KEPT) k.close();
      else {
        k.idle();
        this.#idle.push(k);
      }
      return res;
    } catch (err) {
      this.#busy.delete(k);
      k.close();
      if (this.#closed) throw closedError(ctx);
      if (opts.signal?.aborted) throw new StoreError("the watch was abandoned", ctx);
      if (timedOut) {
        if (call.keys !== undefined) throw waitTimeout(call.keys, call.waitMs!, ctx);
        throw new StoreError(`no answer from the store server at ${this.url} within ${limitMs} ms`, ctx);
      }
      // A kept connection closed without a word: the server dropped it idle, or read this request while
      // shutting down (the bounded server finishes the requests it has handed on, so one that got no
      // answer was not run), or died (then a new connection is refused). Once more on a new connection
      // is safe for every request, add and compare-set included.
      if (reused) return await this.#exchange(ctx, call, req, limitMs, opts, true);
      throw new ConnectFailure(err, false);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * The headers of every request: the one place a request is authenticated, signed in `session` over
   * its counter, method, path with query and body.
   */
  #headers(
    session: ClientSession,
    method: string,
    path: string,
    body: Uint8Array,
  ): { counter: number; headers: Record<string, string> } {
    // Signed exactly as sent: the server checks the request line's target as it arrived.
    const { counter, header } = session.sign(method, path, body);
    return { counter, headers: { authorization: header, "content-type": "application/octet-stream" } };
  }

  #statusError(ctx: Ctx, status: number, body: Uint8Array, call: Call): Error {
    const text = new TextDecoder().decode(body);
    if (status === 408 && call.waitMs !== undefined) {
      let missing = call.keys ?? [];
      try {
        const parsed = JSON.parse(text) as { missing?: unknown };
        if (Array.isArray(parsed.missing)) missing = parsed.missing.map(String);
      } catch {
        // Keep the keys we asked for.
      }
      return waitTimeout(missing, call.waitMs, ctx);
    }
    if (status === 413) {
      return new StoreError(
        `the store server at ${this.url} refused a body over its size limit (HTTP 413): ${text}`,
        ctx,
      );
    }
    const what = status === 503 ? "is shutting down" : `answered HTTP ${status}`;
    return new StoreError(`the store server at ${this.url} ${what}: ${text}`, ctx);
  }
}

/** A request that failed below HTTP (refused, reset, unreachable host); retried on first contact only. */
class ConnectFailure extends Error {
  /** Whether it failed while connecting, so that the request surely was not sent. */
  readonly connecting: boolean;
  constructor(err: unknown, connecting: boolean) {
    const refused = err instanceof Deno.errors.ConnectionRefused;
    super(refused ? "connection refused" : err instanceof Error ? err.message : String(err), { cause: err });
    this.connecting = connecting;
  }
}
