/**
 * @module
 * One HTTP/1.1 connection of choir's servers: reads a request head (bounded in size and time), its body
 * (bounded in size, refused with 413 before it is read), hands a `Request` to the handler (or the head
 * and body bytes to a {@link RawHttpApp}), writes the answer, and repeats while the client keeps the connection (and the handler did not answer
 * `Connection: close`). While the handler runs, a read on the socket notices a client that hangs up and
 * aborts `request.signal`, so a long-poll leaves with it.
 * Deadlines are enforced by the server's sweep through {@link HttpConnection.expired}.
 */

import { type BadHead, isBadHead, parseHead, type RequestHead } from "./head.ts";
import { type FdSender, fdSender } from "./fd_send.ts";
import type { RawHttpApp, RawHttpResponse } from "./raw.ts";
import { CONTINUE, rawResponseBytes, refusal, responseBytes } from "./response.ts";

/** The limits one connection enforces (all required; see HttpLimits for their meaning). */
export interface ConnectionLimits {
  /** Largest body, in bytes. */
  maxBodyBytes: number;
  /** Largest head, in bytes. */
  maxHeadBytes: number;
  /** How long a started head may take, in ms. */
  headTimeoutMs: number;
  /** How long a connection may idle between requests, in ms. */
  idleTimeoutMs: number;
  /** How long a body read or response write may go without progress, in ms. */
  ioTimeoutMs: number;
}

/** Handles one request (Hono's `app.fetch` fits). */
export type HttpHandler = (request: Request) => Response | Promise<Response>;

/**
 * What a connection waits for: `head` (a new connection, or a request's head under way), `idle`
 * (between requests), `body`, `handler` (the application has the request), `write` (the response).
 */
export type Phase = "idle" | "head" | "body" | "handler" | "write";

const FIRST_BUFFER = 2048;
/** After a refusal, how long and how much of the unread request is read and dropped (see #linger). */
const LINGER_MS = 1_000;
const LINGER_BYTES = 16 << 20;
const FIRST_BODY_CHUNK = 64 << 10;
/** Responses up to this size go out in one write with their head. */
const ONE_WRITE = 64 << 10;

/** One accepted connection; `serve()` runs it to its end. */
export class HttpConnection {
  readonly #conn: Deno.TcpConn;
  readonly #handler: HttpHandler | RawHttpApp;
  readonly #limits: ConnectionLimits;
  readonly #base: string;
  /** libc `send` on the socket (a write without a trip through Deno's event loop), when found. */
  readonly #fast: FdSender | null;
  #phase: Phase = "head";
  #since = performance.now();
  #buf = new Uint8Array(FIRST_BUFFER);
  #len = 0;
  #reading: Promise<void> | null = null;
  #eof = false;
  #closed = false;
  readonly #hangup = new AbortController();

  /** @param base the URL prefix requests get, e.g. `http://127.0.0.1:29500`. */
  constructor(
    conn: Deno.TcpConn,
    handler: HttpHandler | RawHttpApp,
    limits: ConnectionLimits,
    base: string,
  ) {
    this.#conn = conn;
    this.#handler = handler;
    this.#limits = limits;
    this.#base = base;
    this.#fast = fdSender(conn, true);
  }

  /** What it waits for now. */
  get phase(): Phase {
    return this.#phase;
  }

  /** Whether closing it loses no request the application has begun (it may make room for another). */
  get evictable(): boolean {
    return this.#phase === "idle" || this.#phase === "head" || this.#phase === "body";
  }

  /** Whether its current wait ran past its limit by `now` (a `performance.now()` time). */
  expired(now: number): boolean {
    const l = this.#limits;
    const limit = this.#phase === "head"
      ? l.headTimeoutMs
      : this.#phase === "idle"
      ? l.idleTimeoutMs
      : this.#phase === "handler"
      ? Infinity // the application bounds its own waits (the store clamps its long-polls)
      : l.ioTimeoutMs;
    return now - this.#since > limit;
  }

  /** Closes the socket (idempotent); a running handler sees `request.signal` abort. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#fast?.close();
    this.#hangup.abort();
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }

  /** Serves requests until the client or the server ends the connection; `closing` says the latter. */
  async serve(closing: () => boolean): Promise<void> {
    try {
      while (!this.#closed) {
        const head = await this.#readHead();
        if (head === null) return;
        if (isBadHead(head)) return await this.#refuse(head.status, head.message);
        const max = this.#limits.maxBodyBytes;
        if (head.contentLength > max) {
          const why =
            `a request body of ${head.contentLength} bytes is over this server's limit of ${max} bytes`;
          return await this.#refuse(413, why);
        }
        if (head.expectContinue && head.contentLength > 0) await this.#write(CONTINUE);
        const body = head.contentLength > 0 ? await this.#readBody(head.contentLength) : null;
        if (body === undefined) return; // the client left mid-body
        this.#enter("handler");
        if (typeof this.#handler !== "function") {
          const answer = await this.#raw(this.#handler, head, body);
          const keepAlive = head.keepAlive && !closing() && !this.#eof && !answer.close;
          await this.#send(rawResponseBytes(answer, head.method === "HEAD", keepAlive));
          if (!keepAlive) return;
          this.#enter("idle");
          continue;
        }
        const request = this.#request(head, body);
        if (request === null) return await this.#refuse(400, "malformed request");
        this.#watchForHangup();
        let response: Response;
        try {
          response = await this.#handler(request);
        } catch {
          response = refusal(500, "internal error");
        }
        // The application may end the connection too (`Connection: close`, e.g. a server shutting down).
        const keepAlive = head.keepAlive && !closing() && !this.#eof && !asksClose(response);
        await this.#respond(response, head.method === "HEAD", keepAlive);
        if (!keepAlive) return;
        this.#enter("idle");
      }
    } catch {
      // A reset, a write to a closed socket, a close by the sweep: the connection simply ends.
    } finally {
      this.close();
    }
  }

  #enter(phase: Phase): void {
    this.#phase = phase;
    this.#since = performance.now();
  }

  /** The raw app's answer to one request (500 when it throws). */
  async #raw(
    app: RawHttpApp,
    head: RequestHead,
    body: Uint8Array<ArrayBuffer> | null,
  ): Promise<RawHttpResponse> {
    this.#watchForHangup();
    try {
      return await app.raw({
        method: head.method,
        target: head.target,
        headers: head.headers,
        body: body ?? new Uint8Array(0),
        signal: this.#hangup.signal,
      });
    } catch {
      return { status: 500, body: new TextEncoder().encode("internal error\n") };
    }
  }

  #request(head: RequestHead, body: Uint8Array<ArrayBuffer> | null): Request | null {
    try {
      return new Request(this.#base + head.target, {
        method: head.method,
        headers: head.headers,
        // GET and HEAD carry no body in fetch's model; one sent anyway was read off the wire.
        body: head.method === "GET" || head.method === "HEAD" ? null : body,
        signal: this.#hangup.signal,
      });
    } catch {
      return null; // a header name or value fetch refuses
    }
  }

  /** The next request's head, or null when the client closed between requests. */
  async #readHead(): Promise<RequestHead | BadHead | null> {
    let scanFrom = 0;
    for (;;) {
      const end = headEnd(this.#buf, scanFrom, this.#len);
      if (end >= 0) {
        const head = parseHead(this.#buf.subarray(0, end - 4));
        this.#consume(end);
        return head;
      }
      const max = this.#limits.maxHeadBytes;
      if (this.#len >= max) return { status: 431, message: `request head over ${max} bytes` };
      scanFrom = Math.max(0, this.#len - 3);
      if (this.#len === this.#buf.length) this.#grow(Math.min(this.#buf.length * 2, max));
      if (!(await this.#readMore())) return null;
      if (this.#phase === "idle") this.#enter("head");
    }
  }

  /** Reads a body of `length` bytes (at most the limit, checked before); undefined if the client left. */
  async #readBody(length: number): Promise<Uint8Array<ArrayBuffer> | undefined> {
    this.#enter("body");
    // Grown as bytes arrive, so a Content-Length alone never allocates what it claims.
    let out = new Uint8Array(Math.min(length, FIRST_BODY_CHUNK));
    let got = Math.min(this.#len, length);
    out.set(this.#buf.subarray(0, got));
    this.#consume(got);
    while (got < length) {
      if (got === out.length) {
        const bigger = new Uint8Array(Math.min(length, out.length * 4));
        bigger.set(out);
        out = bigger;
      }
      const n = await this.#conn.read(out.subarray(got));
      if (n === null) return undefined;
      got += n;
      this.#since = performance.now();
    }
    return out;
  }

  /**
   * Answers `status` and ends the connection. The client may still be sending the body we refused:
   * closing at once would reset the connection and lose the answer, so we say we are done sending,
   * then read and drop what comes for a moment (bounded in time and bytes) before closing.
   */
  async #refuse(status: number, message: string): Promise<void> {
    await this.#respond(refusal(status, message), false, false);
    this.#enter("write");
    try {
      await this.#conn.closeWrite();
    } catch {
      return;
    }
    const sink = new Uint8Array(64 << 10);
    const end = performance.now() + LINGER_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = new Promise<null>((r) => timer = setTimeout(() => r(null), LINGER_MS));
    try {
      for (let dropped = 0; dropped < LINGER_BYTES && performance.now() < end;) {
        const n = await Promise.race([this.#conn.read(sink), stop]);
        if (n === null) return;
        dropped += n;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async #respond(res: Response, headRequest: boolean, keepAlive: boolean): Promise<void> {
    await this.#send(await responseBytes(res, headRequest, keepAlive));
  }

  /** Writes a response's head and body (one write when small). */
  async #send({ head, body }: { head: Uint8Array; body: Uint8Array }): Promise<void> {
    this.#enter("write");
    if (body.length <= ONE_WRITE) {
      const all = new Uint8Array(head.length + body.length);
      all.set(head);
      all.set(body, head.length);
      await this.#write(all);
    } else {
      await this.#write(head);
      await this.#write(body);
    }
  }

  async #write(bytes: Uint8Array): Promise<void> {
    // What the socket does not take at once (or a failure, which Deno's write then reports) goes through Deno.
    for (let off = this.#fast?.trySend(bytes) ?? 0; off < bytes.length;) {
      off += await this.#conn.write(bytes.subarray(off));
      this.#since = performance.now();
    }
  }

  /**
   * While the handler runs: one read that tells a client hanging up (or brings its next request). Only
   * on an empty buffer: a read lands where the buffer ended when it began, and pipelined bytes already
   * there are consumed before it would complete (such a client is plainly still there).
   */
  #watchForHangup(): void {
    if (this.#reading === null && this.#len === 0) this.#startRead();
  }

  /** Starts the one read a connection has at a time; it forgets itself when it completes. */
  #startRead(): Promise<void> {
    const hangUp = () => {
      this.#reading = null;
      this.#eof = true;
      this.#hangup.abort();
    };
    const reading = this.#conn.read(this.#buf.subarray(this.#len)).then((n) => {
      if (n === null) return hangUp();
      this.#reading = null;
      this.#len += n;
    }, hangUp);
    this.#reading = reading;
    return reading;
  }

  /** Waits for more bytes (the read already under way, if any); false at end of stream. */
  async #readMore(): Promise<boolean> {
    await (this.#reading ?? this.#startRead());
    return !this.#eof;
  }

  #consume(n: number): void {
    if (n < this.#len) this.#buf.copyWithin(0, n, this.#len);
    this.#len -= n;
  }

  #grow(size: number): void {
    const bigger = new Uint8Array(size);
    bigger.set(this.#buf.subarray(0, this.#len));
    this.#buf = bigger;
  }
}

/** Whether the handler's response says the connection should end after it. */
function asksClose(response: Response): boolean {
  return /(^|,)\s*close\s*(,|$)/i.test(response.headers.get("connection") ?? "");
}

/** The index just past the CRLF CRLF that ends a head in `buf[0, len)`, or -1 (scan from `from`). */
function headEnd(buf: Uint8Array, from: number, len: number): number {
  for (let i = Math.max(from, 3); i < len; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) return i + 1;
  }
  return -1;
}
