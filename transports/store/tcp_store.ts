/**
 * @module
 * TcpStore: the Store client of the Hono store server, over fetch with one keep-alive HTTP client.
 * `get`/`wait` long-poll on the server; the first contact retries refused connections until its timeout.
 * Every request is signed in a session whose server proved it holds the token (tcp_session.ts).
 */

import { AuthError, StoreError, StoreTimeoutError } from "../../errors.ts";
import { isPermissionDenied, netPermissionError } from "../permission.ts";
import { checkToken } from "../token.ts";
import type { Store } from "./store.ts";
import { frameCompareSet, HELLO_PATH, keyPath, MAC_HEADER } from "./tcp_protocol.ts";
import { type ClientSession, startHello } from "./tcp_session.ts";
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
const RETRY_MAX_MS = 250;

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
  readonly #client: Deno.HttpClient;
  readonly #closing = new AbortController();
  readonly #inflight = new Set<Promise<unknown>>();
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
    this.#client = Deno.createHttpClient({});
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
    await Promise.allSettled([...this.#inflight]);
    this.#client.close();
  }

  #ctx(op: string, key?: string): Ctx {
    const ctx = { rank: this.rank, op };
    if (this.#closed) throw closedError(ctx);
    if (key !== undefined) checkKey(key, ctx);
    return ctx;
  }

  /** Runs one request, tracked so that `close()` can wait for it; resolves to the response body. */
  #call(ctx: Ctx, call: Call): Promise<Uint8Array> {
    const p = this.#send(ctx, call);
    this.#inflight.add(p);
    const forget = () => this.#inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  async #send(ctx: Ctx, call: Call): Promise<Uint8Array> {
    const start = Date.now();
    const waitDeadline = call.waitMs === undefined ? undefined : start + call.waitMs;
    for (let delay = RETRY_MIN_MS;; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      try {
        return await this.#attempt(ctx, call, waitDeadline);
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

  /**
   * One request in this client's session (opening one first when there is none) with its own deadline;
   * a failed connection surfaces as ConnectFailure. A server that no longer knows the session (it was
   * restarted, or dropped it) gets one fresh session before the request is refused.
   */
  async #attempt(ctx: Ctx, call: Call, waitDeadline: number | undefined): Promise<Uint8Array> {
    let path = call.path;
    let limitMs = this.timeoutMs;
    if (waitDeadline !== undefined) {
      const left = isUnbounded(call.waitMs!) ? Infinity : Math.max(0, waitDeadline - Date.now());
      const ask = Math.min(left, LONG_POLL_MAX_MS);
      path += `?timeout=${ask}`;
      limitMs = ask + LONG_POLL_SLACK_MS;
    }
    const signed = new URL(this.url + path);
    const body = call.body === undefined ? new Uint8Array(0) : toBytes(call.body);
    for (let renewed = false;; renewed = true) {
      const pending = this.#sessionFor(ctx);
      const session = await pending;
      const { counter, header } = await session.sign(call.method, signed.pathname + signed.search, body);
      const headers = { authorization: header, "content-type": "application/octet-stream" };
      const res = await this.#fetch(ctx, call, path, call.method, headers, body, limitMs);
      if (res.status === 401) {
        if (this.#session === pending) this.#session = undefined;
        if (!renewed) continue;
        throw new AuthError(`the store server at ${this.url} refuses the requests of a fresh session`, ctx);
      }
      // A body over the server's cap is refused (413) by its HTTP layer before any session sees the
      // request, so that answer is unsigned; believing it costs nothing (it only makes this call fail).
      if (res.status === 413) throw this.#statusError(ctx, res.status, res.body, call);
      if (!(await session.verify(counter, res.status, res.body, res.mac))) {
        throw new AuthError(
          `an answer from the store server at ${this.url} is not signed by its session (changed on the way?)`,
          ctx,
        );
      }
      if (res.status >= 200 && res.status < 300) return res.body;
      throw this.#statusError(ctx, res.status, res.body, call);
    }
  }

  /** This client's session, opening one (one hello at a time) when there is none. */
  #sessionFor(ctx: Ctx): Promise<ClientSession> {
    if (this.#session !== undefined) return this.#session;
    const opening = (async () => {
      const hello = startHello(this.#token);
      const limitMs = Math.min(this.timeoutMs, HELLO_TIMEOUT_MS);
      const res = await this.#fetch(ctx, undefined, HELLO_PATH, "POST", OCTETS, hello.body, limitMs);
      return await hello.open(res.status, res.body, this.url.slice(7), ctx);
    })();
    this.#session = opening;
    opening.catch(() => {
      if (this.#session === opening) this.#session = undefined;
    });
    return opening;
  }

  /** One HTTP exchange bounded by `limitMs`; errors below HTTP are typed (ConnectFailure, StoreError). */
  async #fetch(
    ctx: Ctx,
    call: Call | undefined,
    path: string,
    method: string,
    headers: Record<string, string>,
    body: Uint8Array<ArrayBuffer>,
    limitMs: number,
  ): Promise<{ status: number; body: Uint8Array; mac: string | null }> {
    const timer = new AbortController();
    const handle = isUnbounded(limitMs) ? undefined : setTimeout(() => timer.abort(), limitMs);
    const signal = AbortSignal.any([timer.signal, this.#closing.signal]);
    try {
      const res = await fetch(this.url + path, {
        method,
        headers,
        body: method === "GET" || method === "DELETE" ? undefined : body,
        signal,
        client: this.#client,
      });
      const answer = new Uint8Array(await res.arrayBuffer());
      this.#contacted = true;
      return { status: res.status, body: answer, mac: res.headers.get(MAC_HEADER) };
    } catch (err) {
      if (this.#closing.signal.aborted) throw closedError(ctx);
      if (isPermissionDenied(err)) {
        throw netPermissionError(
          `cannot reach the store at ${this.url}`,
          `--allow-net=${this.url.slice(7)}`,
          err,
          ctx,
        );
      }
      if (timer.signal.aborted) {
        if (call?.keys !== undefined) throw waitTimeout(call.keys, call.waitMs!, ctx);
        throw new StoreError(`no answer from the store server at ${this.url} within ${limitMs} ms`, ctx);
      }
      if (err instanceof TypeError) throw new ConnectFailure(err);
      throw err;
    } finally {
      if (handle !== undefined) clearTimeout(handle);
    }
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

/** A fetch that failed below HTTP (refused, reset, unreachable host); retried on first contact only. */
class ConnectFailure extends Error {
  /** Whether it failed while connecting, so that the request surely was not sent. */
  readonly connecting: boolean;
  constructor(err: TypeError) {
    const cause = err.cause instanceof Error ? err.cause.message : String(err.cause ?? "");
    super(cause.includes("Connection refused") ? "connection refused" : cause || err.message, { cause: err });
    this.connecting = /\(Connect\)|connect error|Connection refused/i.test(cause);
  }
}
