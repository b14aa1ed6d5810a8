/**
 * @module
 * Starts and stops the TCP store server: the Hono store app over a MemoryStore, on choir's bounded
 * HTTP server (capped connections and bodies, clamped long-polls). Rank 0 or the launcher runs it; the
 * routes live in tcp_app.ts and the client in tcp_store.ts.
 */

import { InvalidArgumentError, StoreError } from "../../errors.ts";
import { serveApp } from "../http_serve.ts";
import { type HttpLimits, resolveLimits } from "../http/server.ts";
import { STORE_MAX_BODY_BYTES, STORE_MAX_CONNECTIONS, STORE_MAX_WAIT_MS } from "../limits.ts";
import { MemoryStore } from "./memory_store.ts";
import { storeApp } from "./tcp_app.ts";

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
   * Longest a long-poll (`get`, `wait`) waits on the server, in ms (default 600000); a longer or
   * unbounded `timeout=` is clamped to it. TcpStore asks again until its own deadline.
   */
  maxWaitMs?: number;
}

/** A running store server. */
export interface StoreServer {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on (the chosen one when 0 was asked). */
  readonly port: number;
  /** What it holds now: open connections and long-polls waiting for keys. */
  stats(): StoreServerStats;
  /** Fails pending long-polls (503), stops accepting requests and closes every connection. */
  close(): Promise<void>;
}

/** A store server's load at one moment. */
export interface StoreServerStats {
  /** Connections open. */
  connections: number;
  /** Long-polls (`get` or `wait`) waiting for keys. */
  waiters: number;
}

/**
 * Starts a store server. Throws StoreError when the address cannot be bound (e.g. the port is
 * taken) and InvalidArgumentError for an empty token.
 */
export async function startStoreServer(opts: StoreServerOptions): Promise<StoreServer> {
  const ctx = { rank: opts.rank, op: "startStoreServer" };
  const limits = resolveLimits(
    { maxConnections: STORE_MAX_CONNECTIONS, maxBodyBytes: STORE_MAX_BODY_BYTES },
    opts.limits,
    ctx.op,
  );
  const maxWaitMs = opts.maxWaitMs ?? STORE_MAX_WAIT_MS;
  if (typeof maxWaitMs !== "number" || !(maxWaitMs > 0)) {
    throw new InvalidArgumentError(`maxWaitMs must be a positive number of ms, got ${maxWaitMs}`, ctx);
  }
  const mem = new MemoryStore({ rank: opts.rank });
  const served = await serveApp(
    {
      hostname: opts.hostname,
      port: opts.port,
      token: opts.token,
      ctx,
      bindError: StoreError,
      onClose: () => mem.close(),
      limits,
    },
    () => storeApp(mem, opts.token, maxWaitMs),
  );
  return {
    hostname: served.hostname,
    port: served.port,
    stats: () => ({ connections: served.connections, waiters: mem.waiting }),
    close: () => served.close(),
  };
}
