/**
 * @module
 * What choir's two HTTP servers (the store server and the status endpoint) share: listening with a
 * typed error when the address cannot be bound, on the bounded server of http/server.ts (capped
 * connections, heads, bodies and idle time), refusing an empty token, and a Hono middleware that
 * admits only requests carrying one of some bearer credentials (the status endpoint's; the store signs
 * its requests instead, tcp_sessions.ts).
 */

import { widenBacklog } from "./socket_lookup.ts";
import type { Hono, MiddlewareHandler } from "hono";
import { type ChoirError, type ErrorContext, InvalidArgumentError } from "../errors.ts";
import { isPermissionDenied, netFlag, netPermissionError } from "./permission.ts";
import { constantTimeEqual } from "./token.ts";
import { BoundedHttpServer, type HttpLimits } from "./http/server.ts";
import type { RawHttpApp } from "./http/raw.ts";

const encoder = new TextEncoder();

/**
 * Refuses (401) every request whose `Authorization` is not `Bearer <one of credentials>`; each
 * credential is compared in constant time, and all of them every time.
 */
export function requireBearer(credentials: Promise<string[]>): MiddlewareHandler {
  const expected = credentials.then((list) => list.map((c) => encoder.encode(`Bearer ${c}`)));
  return async (c, next) => {
    const got = encoder.encode(c.req.header("authorization") ?? "");
    let ok = false;
    for (const e of await expected) ok = constantTimeEqual(got, e) || ok;
    if (!ok) return c.text("missing or wrong credential", 401, { "www-authenticate": "Bearer" });
    await next();
  };
}

/** A running HTTP server. */
export interface Served {
  /** The address it listens on. */
  readonly hostname: string;
  /** The port it listens on (the one picked when 0 was asked for). */
  readonly port: number;
  /** Connections open now. */
  readonly connections: number;
  /** Connections accepted since it started. */
  readonly accepted: number;
  /** Stops it (idempotent); runs `onClose` first. */
  close(): Promise<void>;
}

/** Where and how to serve. */
export interface ServeOptions {
  /** Address to listen on (default 127.0.0.1). */
  hostname?: string;
  /** Port (0 or absent: any free one). */
  port?: number;
  /** The job token; an empty one is an InvalidArgumentError. */
  token: string;
  /** Who is asking, for errors. */
  ctx: ErrorContext;
  /** The error class for an address that cannot be bound. */
  bindError: new (message: string, ctx: ErrorContext) => ChoirError;
  /** Runs before the server shuts down (e.g. releasing long-polls). */
  onClose?: () => Promise<void>;
  /** Its bounds, every one set (see `resolveLimits`). */
  limits: Required<HttpLimits>;
}

/** The accept queue asked for (the kernel caps it at net.core.somaxconn, 4,096 on recent kernels). */
const ACCEPT_BACKLOG = 2048;

/** Serves `app` (built by `build` once the token is checked): a Hono app, or a lean {@link RawHttpApp}. */
export function serveApp(o: ServeOptions, build: () => Hono | RawHttpApp): Promise<Served> {
  if (typeof o.token !== "string" || o.token.length === 0) {
    return Promise.reject(
      new InvalidArgumentError(`${o.ctx.op ?? "the server"} needs a non-empty token`, o.ctx),
    );
  }
  const hostname = o.hostname ?? "127.0.0.1";
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname, port: o.port ?? 0 });
  } catch (err) {
    if (isPermissionDenied(err)) {
      return Promise.reject(
        netPermissionError(
          `cannot listen on ${hostname}:${o.port ?? 0}`,
          netFlag(hostname, o.port),
          err,
          o.ctx,
        ),
      );
    }
    const why = err instanceof Error ? err.message : String(err);
    return Promise.reject(
      new o.bindError(`cannot listen on ${hostname}:${o.port ?? 0}: ${why}`, { ...o.ctx, cause: err }),
    );
  }
  // Every rank of a job contacts the store at once: a queue long enough that none waits for a resent SYN.
  widenBacklog(listener, ACCEPT_BACKLOG);
  const app = build();
  const server = new BoundedHttpServer(listener, "raw" in app ? app : app.fetch, o.limits);
  let closing: Promise<void> | undefined;
  return Promise.resolve({
    hostname: server.hostname,
    port: server.port,
    get connections() {
      return server.connections;
    },
    get accepted() {
      return server.accepted;
    },
    close: () =>
      closing ??= (async () => {
        await o.onClose?.();
        await server.close();
      })(),
  });
}
