/**
 * @module
 * The bounded HTTP/1.1 server under choir's store and status endpoints. Deno.serve has no knob for
 * connections, head or body sizes or idle time, and its accept loop ends the process on EMFILE, so
 * choir accepts connections itself: at most `maxConnections` (a new one closes the oldest connection
 * with no request being handled), deadlines swept four times a second, accept errors survived. Each
 * connection's requests go to the handler as fetch `Request`s (connection.ts).
 */

import { InvalidArgumentError } from "../../errors.ts";
import { acceptLoop, isFdExhaustion } from "../accept_loop.ts";
import {
  HTTP_HEAD_TIMEOUT_MS,
  HTTP_IDLE_TIMEOUT_MS,
  HTTP_IO_TIMEOUT_MS,
  HTTP_MAX_HEAD_BYTES,
} from "../limits.ts";
import { HttpConnection, type HttpHandler } from "./connection.ts";
import type { RawHttpApp } from "./raw.ts";

/** The bounds of an HTTP server; unset fields take the server's defaults (docs/security.md). */
export interface HttpLimits {
  /** Connections kept open at once; past it a new one closes the oldest with no request being handled. */
  maxConnections?: number;
  /** Largest request body in bytes; a larger Content-Length is answered 413 before the body is read. */
  maxBodyBytes?: number;
  /** Largest request head (request line and headers) in bytes (431 past it). Default 16 KiB. */
  maxHeadBytes?: number;
  /** A request head must arrive within this many ms of its first byte (and a new connection's within this of connecting). Default 60 s. */
  headTimeoutMs?: number;
  /** A connection with no request in progress closes after this many ms. Default 5 minutes. */
  idleTimeoutMs?: number;
  /** A body being received or a response being sent must progress within this many ms. Default 30 s. */
  ioTimeoutMs?: number;
}

/** Fills in `given` over a server's own defaults; a limit that is not a positive number is an InvalidArgumentError. */
export function resolveLimits(
  defaults: { maxConnections: number; maxBodyBytes: number },
  given: HttpLimits = {},
  op = "serve",
): Required<HttpLimits> {
  const limits: Required<HttpLimits> = {
    maxConnections: given.maxConnections ?? defaults.maxConnections,
    maxBodyBytes: given.maxBodyBytes ?? defaults.maxBodyBytes,
    maxHeadBytes: given.maxHeadBytes ?? HTTP_MAX_HEAD_BYTES,
    headTimeoutMs: given.headTimeoutMs ?? HTTP_HEAD_TIMEOUT_MS,
    idleTimeoutMs: given.idleTimeoutMs ?? HTTP_IDLE_TIMEOUT_MS,
    ioTimeoutMs: given.ioTimeoutMs ?? HTTP_IO_TIMEOUT_MS,
  };
  for (const [name, value] of Object.entries(limits)) {
    if (typeof value !== "number" || !(value > 0)) {
      throw new InvalidArgumentError(`limits.${name} must be a positive number, got ${value}`, { op });
    }
  }
  return limits;
}

/** How often deadlines are checked, in ms. */
const SWEEP_MS = 250;

/** A running bounded HTTP server over a listener it owns. */
export class BoundedHttpServer {
  readonly #listener: Deno.TcpListener;
  readonly #handler: HttpHandler | RawHttpApp;
  readonly #limits: Required<HttpLimits>;
  readonly #base: string;
  /** Open connections, in the order they were accepted (so the first evictable one is the oldest). */
  readonly #conns = new Set<HttpConnection>();
  readonly #serving = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  readonly #sweep: ReturnType<typeof setInterval>;
  readonly #accepting: Promise<void>;
  #closing = false;
  #accepted = 0;

  /** Starts serving `handler` on `listener` (the server closes the listener when it closes). */
  constructor(
    listener: Deno.TcpListener,
    handler: HttpHandler | RawHttpApp,
    limits: Required<HttpLimits>,
  ) {
    this.#listener = listener;
    this.#handler = handler;
    this.#limits = limits;
    const { hostname, port } = listener.addr;
    this.#base = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
    this.#sweep = setInterval(() => this.#expire(), SWEEP_MS);
    this.#accepting = acceptLoop(listener, {
      onConn: (conn) => this.#admit(conn),
      // Out of descriptors: close the oldest connection that is not in the middle of a request.
      onPressure: (err) => isFdExhaustion(err) && this.#evictOne(),
      closed: () => this.#closing,
    }, this.#stop.signal);
  }

  /** The address it listens on. */
  get hostname(): string {
    return this.#listener.addr.hostname;
  }

  /** The port it listens on. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Connections accepted (admitted, not refused at once) since it started. */
  get accepted(): number {
    return this.#accepted;
  }

  /**
   * Stops accepting, closes connections with no request in progress, lets the running requests
   * finish (a long-poll should be failed by the application first) and closes what is left. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      this.#stop.abort();
      try {
        this.#listener.close();
      } catch { /* closed */ }
      for (const c of this.#conns) if (c.evictable) c.close();
    }
    await this.#accepting;
    // The sweep goes on meanwhile: a response stuck on a client that does not read still times out.
    while (this.#serving.size > 0) await Promise.all([...this.#serving]);
    clearInterval(this.#sweep);
  }

  #admit(conn: Deno.TcpConn): void {
    if (this.#closing || (this.#conns.size >= this.#limits.maxConnections && !this.#evictOne())) {
      try {
        conn.close();
      } catch { /* closed */ }
      return;
    }
    try {
      conn.setNoDelay(true);
    } catch { /* already reset */ }
    const c = new HttpConnection(conn, this.#handler, this.#limits, this.#base);
    this.#accepted++;
    this.#conns.add(c);
    const serving = c.serve(() => this.#closing).finally(() => {
      this.#conns.delete(c);
      this.#serving.delete(serving);
    });
    this.#serving.add(serving);
  }

  /** Closes the oldest connection waiting on its client (a head or idle before one in a body); false if none. */
  #evictOne(): boolean {
    let body: HttpConnection | undefined;
    for (const c of this.#conns) {
      if (c.phase === "head" || c.phase === "idle") {
        this.#drop(c);
        return true;
      }
      if (c.phase === "body") body ??= c;
    }
    if (body === undefined) return false;
    this.#drop(body);
    return true;
  }

  #drop(c: HttpConnection): void {
    this.#conns.delete(c);
    c.close();
  }

  #expire(): void {
    const now = performance.now();
    for (const c of this.#conns) if (c.expired(now)) this.#drop(c);
  }
}
