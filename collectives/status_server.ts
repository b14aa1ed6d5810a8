/**
 * @module
 * The status endpoint of a rank: a Hono app on `Deno.serve` with `GET /status` (JSON) and
 * `GET /metrics` (Prometheus text), every request behind the job token (`Authorization: Bearer`,
 * compared in constant time). What it serves comes from callbacks; it knows nothing of groups.
 *
 * It lives in collectives/ because it is the ProcessGroup's introspection face, not a way of moving
 * bytes between ranks (transports/); it imports only downwards (the token check of the store).
 *
 * Integration (ProcessGroup or initProcessGroup, once per process, after the world group exists):
 * when `env.statusPort !== undefined`, `startStatusServer({ hostname: env.statusAddr, port:
 * env.statusPort === 0 ? 0 : env.statusPort + (env.localRank ?? 0), token, status: () => ({ rank,
 * size, group, backend, inFlight: rec.inFlight(), flightRecorder: rec.snapshot() }), metrics: () =>
 * metrics.text() })`, so that ranks sharing a host get consecutive ports; `close()` it in `destroy()`.
 */

import { Hono } from "hono";
import { InvalidArgumentError, TransportError } from "../errors.ts";
import { tokenMatches } from "../transports/store/tcp_protocol.ts";

/** Content type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Options of {@link startStatusServer}. */
export interface StatusServerOptions {
  /** Address to listen on (default "127.0.0.1"; give another one explicitly to be reachable). */
  hostname?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** The job's secret; every request must carry `Authorization: Bearer <token>`. */
  token: string;
  /** The body of `GET /status`, serialised as JSON (bigints as strings). */
  status: () => object | Promise<object>;
  /** The body of `GET /metrics`, Prometheus text. */
  metrics: () => string | Promise<string>;
  /** The rank running it, named in its errors. */
  rank?: number;
}

/** A running status server. */
export interface StatusServer {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on (the chosen one when 0 was asked). */
  readonly port: number;
  /** Stops accepting requests and closes every connection once running requests are answered. */
  close(): Promise<void>;
}

/**
 * Starts a status server. Throws InvalidArgumentError for an empty token and TransportError when
 * the address cannot be bound (e.g. the port is taken).
 */
export function startStatusServer(opts: StatusServerOptions): Promise<StatusServer> {
  const ctx = { rank: opts.rank, op: "startStatusServer" };
  if (typeof opts.token !== "string" || opts.token.length === 0) {
    return Promise.reject(new InvalidArgumentError("the status server needs a non-empty token", ctx));
  }
  const hostname = opts.hostname ?? "127.0.0.1";
  const app = statusApp(opts);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port: opts.port ?? 0, onListen: () => {} }, app.fetch);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return Promise.reject(
      new TransportError(`cannot listen on ${hostname}:${opts.port ?? 0}: ${why}`, { ...ctx, cause: err }),
    );
  }
  let closing: Promise<void> | undefined;
  return Promise.resolve({
    hostname: server.addr.hostname,
    port: server.addr.port,
    close: () => closing ??= server.shutdown(),
  });
}

function statusApp(opts: StatusServerOptions): Hono {
  const app = new Hono();
  app.use("*", async (c, next) => {
    if (!tokenMatches(c.req.header("authorization"), opts.token)) {
      return c.text("missing or wrong job token", 401, { "www-authenticate": "Bearer" });
    }
    await next();
  });
  app.get("/status", async (c) => {
    const body = JSON.stringify(await opts.status(), (_k, v) => typeof v === "bigint" ? String(v) : v);
    return c.body(body, 200, { "content-type": "application/json; charset=utf-8" });
  });
  app.get(
    "/metrics",
    async (c) => c.body(await opts.metrics(), 200, { "content-type": PROMETHEUS_CONTENT_TYPE }),
  );
  app.notFound((c) => c.text("not found: try /status or /metrics", 404));
  app.onError((err, c) => c.text(err instanceof Error ? err.message : String(err), 500));
  return app;
}
