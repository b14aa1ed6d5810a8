/**
 * @module
 * HTTP/1.1 exchanges over a plain keep-alive `Deno.Conn`, the store client's wire: cheaper than `fetch`,
 * and the connection can be unref'd, so a watch waiting in the background never keeps the process alive.
 * Just what the store server (the bounded server of transports/http/) answers: a status line, headers,
 * and a body framed by content-length (or chunked). What the request carries (auth) and what the answer's
 * headers say (its signature) are the caller's. Not part of the public API.
 */

/** A request to send. */
export interface RawRequest {
  /** HTTP method. */
  method: string;
  /** Path and query. */
  path: string;
  /** Value of the Host header. */
  host: string;
  /** Extra headers (lower-case names). */
  headers: Record<string, string>;
  /** The body, if any. */
  body?: Uint8Array;
}

/** What came back. */
export interface RawResponse {
  /** HTTP status code. */
  status: number;
  /** The body bytes. */
  body: Uint8Array;
  /** Whether the server asked to close the connection after it. */
  close: boolean;
  /** The response headers (lower-case names). */
  headers: Map<string, string>;
}

import { type FdSender, fdSender } from "../http/fd_send.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const MAX_HEAD = 64 * 1024;
/** A connection's read buffer at first, and at most. */
const FIRST_CHUNK = 1024;
const MAX_CHUNK = 64 * 1024;

/**
 * A keep-alive connection. While idle it keeps one read pending (unref'd, so it never keeps the process
 * alive) that notices when the server closes it, as HTTP clients do, so that a dead one is not picked for
 * a request. The pending read becomes the first read of the next response.
 */
export class KeptConn {
  /** The connection. */
  readonly conn: Deno.Conn;
  /** libc `send` on the socket, when found: a request goes out without a trip through Deno's event loop. */
  readonly #fast: FdSender | null;
  /** When it went idle (ms since the epoch). */
  since = 0;
  // Starts small and doubles while answers fill it: thousands of simulated ranks hold thousands of
  // connections, and most answers are a few hundred bytes.
  #chunk = new Uint8Array(FIRST_CHUNK);
  #pending: Promise<number | null> | null = null;
  #dead = false;
  #busy = true;

  /** Wraps a fresh connection. */
  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.#fast = fdSender(conn);
  }

  /** Closes the connection (idempotent); its descriptor is not written through libc after this. */
  close(): void {
    this.#fast?.close();
    try {
      this.conn.close();
    } catch { /* closed already */ }
  }

  /** Whether the server closed it (or sent something unasked) while it was idle. */
  get dead(): boolean {
    return this.#dead;
  }

  /** Marks it idle: unref'd, with a read pending that tells when the server closes it. */
  idle(): void {
    this.since = Date.now();
    this.#busy = false;
    this.conn.unref();
    const p = this.conn.read(this.#chunk).catch(() => null);
    this.#pending = p;
    p.then((n) => {
      // Whatever comes while idle (the end, or bytes nobody asked for) leaves it unusable.
      if (!this.#busy && (n === null || n > 0)) this.#dead = true;
    });
  }

  /** Sends `req` and reads the whole response; throws on a closed or garbled stream. */
  async exchange(req: RawRequest): Promise<RawResponse> {
    this.#busy = true;
    const body = req.body ?? new Uint8Array(0);
    let head =
      `${req.method} ${req.path} HTTP/1.1\r\nhost: ${req.host}\r\ncontent-length: ${body.length}\r\n`;
    for (const [k, v] of Object.entries(req.headers)) head += `${k}: ${v}\r\n`;
    const headBytes = enc.encode(head + "\r\n");
    const out = new Uint8Array(headBytes.length + body.length);
    out.set(headBytes);
    out.set(body, headBytes.length);
    // The answer is read while the request is written: a server may answer early (413 for a body over
    // its limit) and close before taking the rest, and that answer is the one to report.
    let written = false;
    const writing = (async () => {
      for (let off = this.#fast?.trySend(out) ?? 0; off < out.length;) {
        off += await this.conn.write(out.subarray(off));
      }
      written = true;
    })();
    writing.catch(() => {}); // seen below; never unhandled meanwhile
    let res: RawResponse;
    try {
      res = await readResponse(new Reader(this));
    } catch (err) {
      await writing; // a failed write is the better error
      throw err;
    }
    // Answered before the request was all sent: the connection cannot carry another (the caller closes
    // it, which ends the write).
    return written ? res : { ...res, close: true };
  }

  /** Reads into the internal chunk: the read started while idle first, if any. Null at the end. */
  async read(): Promise<Uint8Array | null> {
    const pending = this.#pending;
    this.#pending = null;
    const chunk = this.#chunk;
    const n = pending ? await pending : await this.conn.read(chunk);
    if (n === null) return null;
    // The caller copies what it gets before the next read, so the next read may use a bigger chunk.
    if (n === chunk.length && chunk.length < MAX_CHUNK) this.#chunk = new Uint8Array(2 * chunk.length);
    return chunk.subarray(0, n);
  }
}

/** Buffered reads from a kept connection. */
class Reader {
  #buf = new Uint8Array(0);
  constructor(readonly kept: KeptConn) {}

  /** Reads more bytes onto the buffer; throws at the end of the stream. */
  async #more(): Promise<void> {
    const chunk = await this.kept.read();
    if (chunk === null) throw new Error("the store server closed the connection");
    const next = new Uint8Array(this.#buf.length + chunk.length);
    next.set(this.#buf);
    next.set(chunk, this.#buf.length);
    this.#buf = next;
  }

  /** The bytes up to and including the first `\r\n\r\n` (or `\r\n` when `line`). */
  async until(line: boolean): Promise<string> {
    const mark = line ? "\r\n" : "\r\n\r\n";
    for (;;) {
      const text = dec.decode(this.#buf.subarray(0, Math.min(this.#buf.length, MAX_HEAD)));
      const at = text.indexOf(mark);
      if (at >= 0) {
        const end = enc.encode(text.slice(0, at + mark.length)).length;
        this.#buf = this.#buf.subarray(end);
        return text.slice(0, at);
      }
      if (this.#buf.length > MAX_HEAD) throw new Error("the store server sent an oversized header");
      await this.#more();
    }
  }

  /** Exactly `n` bytes. */
  async take(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) await this.#more();
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
}

async function readResponse(r: Reader): Promise<RawResponse> {
  const [statusLine, ...lines] = (await r.until(false)).split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!m) {
    throw new Error(`the store server sent a bad status line ${JSON.stringify(statusLine.slice(0, 80))}`);
  }
  const headers = new Map<string, string>();
  for (const l of lines) {
    const colon = l.indexOf(":");
    if (colon > 0) headers.set(l.slice(0, colon).trim().toLowerCase(), l.slice(colon + 1).trim());
  }
  const close = (headers.get("connection") ?? "").toLowerCase() === "close";
  if ((headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
    const parts: Uint8Array[] = [];
    for (;;) {
      const size = parseInt((await r.until(true)).split(";")[0], 16);
      if (!Number.isFinite(size)) throw new Error("the store server sent a bad chunk size");
      if (size === 0) {
        await r.until(true); // the empty line after the last chunk (no trailers expected)
        break;
      }
      parts.push(await r.take(size));
      await r.take(2);
    }
    const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) body.set(p, (off += p.length) - p.length);
    return { status: Number(m[1]), body, close, headers };
  }
  const length = Number(headers.get("content-length") ?? "0");
  if (!Number.isSafeInteger(length) || length < 0) throw new Error("the store server sent a bad length");
  return { status: Number(m[1]), body: await r.take(length), close, headers };
}
