/**
 * @module
 * Starts and stops the TCP store server: `Deno.serve` running the Hono store app over a MemoryStore.
 * Rank 0 or the launcher runs it; the routes live in tcp_app.ts and the client in tcp_store.ts.
 */

import { StoreError } from "../../errors.ts";
import { serveApp } from "../http_serve.ts";
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
}

/** A running store server. */
export interface StoreServer {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on (the chosen one when 0 was asked). */
  readonly port: number;
  /** Fails pending long-polls (503), stops accepting requests and closes every connection. */
  close(): Promise<void>;
}

/**
 * Starts a store server. Throws StoreError when the address cannot be bound (e.g. the port is
 * taken) and InvalidArgumentError for an empty token.
 */
export function startStoreServer(opts: StoreServerOptions): Promise<StoreServer> {
  const mem = new MemoryStore({ rank: opts.rank });
  return serveApp(
    {
      hostname: opts.hostname,
      port: opts.port,
      token: opts.token,
      ctx: { rank: opts.rank, op: "startStoreServer" },
      bindError: StoreError,
      onClose: () => mem.close(),
    },
    () => storeApp(mem, opts.token),
  );
}
