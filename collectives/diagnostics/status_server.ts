/**
 * @module
 * The status endpoint of a rank: a Hono app on `Deno.serve` with `GET /status` (JSON) and
 * `GET /metrics` (Prometheus text), every request behind a bearer credential: the read-only status
 * token derived from the job token (`statusToken()`, what a Prometheus scraper should hold), or the job
 * token itself. What it serves comes from callbacks; it knows nothing of groups.
 *
 * It lives in collectives/ because it is the ProcessGroup's introspection face, not a way of moving
 * bytes between ranks (transports/); it imports only downwards (the bearer check and the token helpers).
 *
 * Integration (ProcessGroup or initProcessGroup, once per process, after the world group exists):
 * when `env.statusPort !== undefined`, `startStatusServer({ hostname: env.statusAddr, port:
 * env.statusPort === 0 ? 0 : env.statusPort + (env.localRank ?? 0), token, status: () => ({ rank,
 * size, group, backend, inFlight: rec.inFlight(), flightRecorder: rec.snapshot() }), metrics: () =>
 * metrics.text() })`, so that ranks sharing a host get consecutive ports; `close()` it in `destroy()`.
 */

import { Hono } from "hono";
import { TransportError } from "../../errors.ts";
import { requireBearer, serveApp } from "../../transports/http_serve.ts";
import { statusToken } from "../../transports/token.ts";
import { type HttpLimits, resolveLimits } from "../../transports/http/server.ts";
import { STATUS_MAX_BODY_BYTES, STATUS_MAX_CONNECTIONS } from "../../transports/limits.ts";

/** Content type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Options of {@link startStatusServer}. */
export interface StatusServerOptions {
  /** Address to listen on (default "127.0.0.1"; give another one explicitly to be reachable). */
  hostname?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /**
   * The job's secret; every request must carry `Authorization: Bearer <credential>`, where the
   * credential is `statusToken(token)` (read-only, for scrapers) or the token itself.
   */
  token: string;
  /** The body of `GET /status`, serialised as JSON (bigints as strings). */
  status: () => object | Promise<object>;
  /** The body of `GET /metrics`, Prometheus text. */
  metrics: () => string | Promise<string>;
  /** The rank running it, named in its errors. */
  rank?: number;
  /** Bounds of the server (docs/security.md): default 256 connections, 64 KiB bodies. */
  limits?: HttpLimits;
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
export async function startStatusServer(opts: StatusServerOptions): Promise<StatusServer> {
  const op = "startStatusServer";
  const limits = resolveLimits(
    { maxConnections: STATUS_MAX_CONNECTIONS, maxBodyBytes: STATUS_MAX_BODY_BYTES },
    opts.limits,
    op,
  );
  const served = await serveApp(
    {
      hostname: opts.hostname,
      port: opts.port,
      token: opts.token,
      ctx: { rank: opts.rank, op },
      bindError: TransportError,
      limits,
    },
    () => statusApp(opts),
  );
  return { hostname: served.hostname, port: served.port, close: () => served.close() };
}

function statusApp(opts: StatusServerOptions): Hono {
  const app = new Hono();
  app.use("*", requireBearer(statusToken(opts.token).then((status) => [status, opts.token])));
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
