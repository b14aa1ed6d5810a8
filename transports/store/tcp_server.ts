/**
 * @module
 * Starts and stops the TCP store server: the Hono store app over a MemoryStore, on choir's bounded
 * HTTP server (capped connections and bodies, clamped long-polls). Rank 0 or the launcher runs it, for
 * jobs of more than {@link STORE_THREAD_MIN_RANKS} ranks on a Worker thread of its own
 * (server_thread.ts, which runs the same bounded server and app), so that a rank busy computing, or
 * spinning in a shared-memory wait, never delays the other ranks' store calls; a small job keeps it on
 * its event loop (a Worker takes 50-200 ms to start, which a 2-rank job would wait for). The routes live
 * in tcp_app.ts and the client in tcp_store.ts.
 */

import { InvalidArgumentError, PermissionError, StoreError } from "../../errors.ts";
import { serveApp, type Served } from "../http_serve.ts";
import { type HttpLimits, resolveLimits } from "../http/server.ts";
import { STORE_MAX_BODY_BYTES, STORE_MAX_CONNECTIONS, STORE_MAX_WAIT_MS } from "../limits.ts";
import { threadMayLoad } from "../permission.ts";
import { fdSendStats } from "../http/fd_send.ts";
import { MemoryStore } from "./memory_store.ts";
import { newStoreStats, storeApp } from "./tcp_app.ts";
import type { StoreStats } from "./tcp_protocol.ts";

/** Options of {@link startStoreServer}. */
export interface StoreServerOptions {
  /** Address to listen on (default "127.0.0.1"; "0.0.0.0" for every interface). */
  hostname?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /**
   * The job's secret. The server proves it holds it to every client (session hello) and admits only
   * requests signed in such a session; it never travels (tcp_protocol.ts).
   */
  token: string;
  /** The rank running the server, named in its errors. */
  rank?: number;
  /**
   * Bounds of the server (docs/security.md): default 8192 connections and 1 GiB bodies (a value is a
   * body: a larger `set` is refused with HTTP 413, a StoreError at the client).
   */
  limits?: HttpLimits;
  /**
   * Longest a long-poll (`get`, `wait`, `multiGet`, `watch`) waits on the server, in ms (default
   * 600000); a longer or unbounded `timeout=` is clamped to it. TcpStore asks again until its own deadline.
   */
  maxWaitMs?: number;
  /**
   * Where the server runs: `worker` (default), a Worker thread of its own, so that nothing this thread
   * does (a long computation, a synchronous wait) delays the store; or `main`, this thread's event loop.
   * {@link storeThreadFor} picks by the job's size. Without read permission for the thread's module
   * (a local checkout run with narrow permissions) it runs on this thread.
   */
  thread?: "worker" | "main";
}

/** Jobs of more ranks than this serve the store from a Worker thread (see {@link storeThreadFor}). */
export const STORE_THREAD_MIN_RANKS = 16;

/** Where a job of `worldSize` ranks (or up to it) serves its store: `worker` above 16 ranks, else `main`. */
export function storeThreadFor(worldSize: number): "worker" | "main" {
  return worldSize > STORE_THREAD_MIN_RANKS ? "worker" : "main";
}

/**
 * A store server's counters and load at one moment: requests (in all and by route), requests at once,
 * connections open and accepted, long-polls waiting for keys, keys held.
 */
export type StoreServerStats = StoreStats;

/** A running store server. */
export interface StoreServer {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on (the chosen one when 0 was asked). */
  readonly port: number;
  /**
   * What it has served so far and holds now: requests (in all and by route), requests at once,
   * connections open and accepted, long-polls waiting for keys, keys. Asked of the serving thread,
   * never over HTTP (it adds no request).
   */
  stats(): Promise<StoreServerStats>;
  /** Fails pending long-polls (503), stops accepting requests and closes every connection. */
  close(): Promise<void>;
}

/**
 * Starts a store server. Throws StoreError when the address cannot be bound (e.g. the port is
 * taken; its cause is then Deno.errors.AddrInUse) and InvalidArgumentError for an empty token or a
 * bad limit.
 */
export async function startStoreServer(opts: StoreServerOptions): Promise<StoreServer> {
  // Checked on this thread, so that a bad option is the same error wherever the server runs.
  const resolved = { ...opts, ...serverBounds(opts) };
  return await (opts.thread === "main" || !threadLoadable() ? serveHere(resolved) : serveOnWorker(resolved));
}

/** The server's limits and longest wait, every one set; a bad one is an InvalidArgumentError. */
function serverBounds(opts: StoreServerOptions): { limits: Required<HttpLimits>; maxWaitMs: number } {
  const op = "startStoreServer";
  const limits = resolveLimits(
    { maxConnections: STORE_MAX_CONNECTIONS, maxBodyBytes: STORE_MAX_BODY_BYTES },
    opts.limits,
    op,
  );
  const maxWaitMs = opts.maxWaitMs ?? STORE_MAX_WAIT_MS;
  if (typeof maxWaitMs !== "number" || !(maxWaitMs > 0)) {
    throw new InvalidArgumentError(`maxWaitMs must be a positive number of ms, got ${maxWaitMs}`, {
      rank: opts.rank,
      op,
    });
  }
  return { limits, maxWaitMs };
}

/** Whether a Worker may load the server's module (else the server runs on this thread instead of failing). */
function threadLoadable(): boolean {
  return threadMayLoad(new URL("./server_thread.ts", import.meta.url));
}

/** Serves on this thread's event loop (what the Worker thread itself runs). */
export async function serveHere(opts: StoreServerOptions): Promise<StoreServer> {
  const ctx = { rank: opts.rank, op: "startStoreServer" };
  const { limits, maxWaitMs } = serverBounds(opts);
  const mem = new MemoryStore({ rank: opts.rank });
  const stats = newStoreStats();
  // The app is built before the server exists; its counters read the server once there is one.
  const held: { served?: Served } = {};
  const connections = () => ({
    connections: held.served?.connections ?? 0,
    connectionsSeen: held.served?.accepted ?? 0,
  });
  const server = held.served = await serveApp(
    {
      hostname: opts.hostname,
      port: opts.port,
      token: opts.token,
      ctx,
      bindError: StoreError,
      onClose: () => mem.close(),
      limits,
    },
    () => storeApp(mem, opts.token, maxWaitMs, { stats, connections }),
  );
  return {
    hostname: server.hostname,
    port: server.port,
    stats: async () => ({
      ...stats,
      byRoute: { ...stats.byRoute },
      ...connections(),
      waiters: mem.waiting,
      keys: await mem.numKeys(),
      fdSend: { ...fdSendStats },
    }),
    close: () => server.close(),
  };
}

/** A message from the server thread. */
export type ThreadReply =
  | { kind: "started"; hostname: string; port: number }
  | { kind: "failed"; error: ThreadError }
  | { kind: "stats"; id: number; stats?: StoreStats; error?: ThreadError }
  | { kind: "closed" };

/** A message to the server thread. */
export type ThreadRequest =
  | { kind: "start"; opts: StoreServerOptions }
  | { kind: "stats"; id: number }
  | { kind: "close" };

/** An error of the server thread as it crosses to this one. */
export interface ThreadError {
  /** Class name. */
  name: string;
  /** Full message. */
  message: string;
  /** For a PermissionError: the flag that grants it. */
  permission?: string;
  /** The address was taken. */
  addrInUse?: boolean;
  /** The address is not this host's. */
  addrNotAvailable?: boolean;
}

/** How long the server thread may take to start listening (it loads the Hono app first). */
const START_MS = 30_000;

async function serveOnWorker(opts: StoreServerOptions): Promise<StoreServer> {
  const ctx = { rank: opts.rank, op: "startStoreServer" };
  if (typeof opts.token !== "string" || opts.token.length === 0) {
    throw new InvalidArgumentError("startStoreServer needs a non-empty token", ctx);
  }
  const worker = new Worker(new URL("./server_thread.ts", import.meta.url), { type: "module" });
  const stats = new Map<number, (m: { stats?: StoreStats; error?: ThreadError }) => void>();
  let nextId = 0;
  let onClosed: (() => void) | undefined;
  const started = new Promise<{ hostname: string; port: number }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new StoreError(`the store server thread did not start within ${START_MS} ms`, ctx)),
      START_MS,
    );
    worker.onerror = (e) => {
      e.preventDefault();
      clearTimeout(timer);
      reject(new StoreError(`the store server thread failed: ${e.message}`, ctx));
    };
    worker.onmessage = (e: MessageEvent<ThreadReply>) => {
      const m = e.data;
      if (m.kind === "started") {
        clearTimeout(timer);
        resolve(m);
      } else if (m.kind === "failed") {
        clearTimeout(timer);
        reject(rebuild(m.error));
      } else if (m.kind === "stats") {
        stats.get(m.id)?.(m);
        stats.delete(m.id);
      } else onClosed?.();
    };
  });
  worker.postMessage({ kind: "start", opts } satisfies ThreadRequest);
  let addr: { hostname: string; port: number };
  try {
    addr = await started;
  } catch (err) {
    worker.terminate();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    hostname: addr.hostname,
    port: addr.port,
    stats: () => {
      if (closing) return Promise.reject(new StoreError("the store server is closed", ctx));
      const id = nextId++;
      return new Promise<StoreStats>((resolve, reject) => {
        const timer = setTimeout(() => {
          stats.delete(id);
          reject(new StoreError("the store server thread did not answer within 5000 ms", ctx));
        }, 5_000);
        stats.set(id, (m) => {
          clearTimeout(timer);
          if (m.stats) resolve(m.stats);
          else reject(rebuild(m.error ?? { name: "StoreError", message: "no stats" }));
        });
        worker.postMessage({ kind: "stats", id } satisfies ThreadRequest);
      });
    },
    close: () =>
      closing ??= new Promise<void>((resolve) => {
        // A thread that does not answer within a moment is stopped anyway.
        const timer = setTimeout(() => onClosed?.(), 5_000);
        onClosed = () => {
          clearTimeout(timer);
          worker.terminate();
          resolve();
        };
        worker.postMessage({ kind: "close" } satisfies ThreadRequest);
      }),
  };
}

/** The server thread's error, as the class this thread's callers expect. */
function rebuild(w: ThreadError): Error {
  let e: Error;
  if (w.name === "PermissionError") e = new PermissionError("", w.permission ?? "--allow-net");
  else if (w.name === "InvalidArgumentError") e = new InvalidArgumentError("");
  else {
    const cause = w.addrInUse
      ? new Deno.errors.AddrInUse(w.message)
      : w.addrNotAvailable
      ? new Deno.errors.AddrNotAvailable(w.message)
      : undefined;
    e = new StoreError("", cause ? { cause } : {});
  }
  e.message = w.message;
  return e;
}
