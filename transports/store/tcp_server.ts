/**
 * @module
 * Starts and stops the TCP store server: `Deno.serve` running the Hono store app over a MemoryStore.
 * Rank 0 or the launcher runs it; the routes live in tcp_app.ts and the client in tcp_store.ts.
 */

import { InvalidArgumentError, StoreError } from "../../errors.ts";
import { MemoryStore } from "./memory_store.ts";
import { storeApp } from "./tcp_app.ts";

/** Options of {@link startStoreServer}. */
export interface StoreServerOptions {
  /** Address to listen on (default "127.0.0.1"; "0.0.0.0" for every interface). */
  hostname?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** The job's secret; every request must carry `Authorization: Bearer <token>`. */
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
  const ctx = { rank: opts.rank, op: "startStoreServer" };
  if (typeof opts.token !== "string" || opts.token.length === 0) {
    return Promise.reject(new InvalidArgumentError("the store server needs a non-empty token", ctx));
  }
  const hostname = opts.hostname ?? "127.0.0.1";
  const mem = new MemoryStore({ rank: opts.rank });
  const app = storeApp(mem, opts.token);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port: opts.port ?? 0, onListen: () => {} }, app.fetch);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return Promise.reject(
      new StoreError(`cannot listen on ${hostname}:${opts.port ?? 0}: ${why}`, { ...ctx, cause: err }),
    );
  }
  let closing: Promise<void> | undefined;
  return Promise.resolve({
    hostname: server.addr.hostname,
    port: server.addr.port,
    close: () => {
      closing ??= (async () => {
        await mem.close();
        await server.shutdown();
      })();
      return closing;
    },
  });
}
