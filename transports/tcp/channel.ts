/**
 * @module
 * One framed, full-duplex TCP link to a peer. Small frames travel in one write and one read with
 * their header; large payloads are read straight into the caller's buffer (no intermediate copy).
 * While no receive waits, the link still reads ahead (the next header, or the end of the stream), so
 * a peer that fails or dies between collectives is noticed at once: its abort frame (the cause it
 * sends before closing) or its end of stream reaches the transport through `onPeerFailure`.
 */

import { ChoirError, DataCorruptionError, PeerLostError, TransportError } from "../../errors.ts";
import { crc32c } from "../crc32c.ts";
import { decodeCause, encodeCause, encodeGoodbye, isGoodbye } from "../abort_cause.ts";
import {
  abortCauseBytes,
  checkHeader,
  decodeHeader,
  encodeAbortFrame,
  encodeHeader,
  type FrameHeader,
  HEADER_BYTES,
} from "../frame.ts";
import type { Channel } from "../transport.ts";

/** Frames up to this payload size are copied next to their header and written in one call. */
const COALESCE_BYTES = 32 * 1024;
/** Bytes of the CRC32C trailer after each payload when checksums are on. */
const TRAILER = 4;
/** How long a failing rank tries to hand its cause to a peer before it just closes, ms. */
const ABORT_SEND_MS = 500;
/** How long a rank whose send failed looks for the cause its peer sent before closing, ms. */
const CAUSE_WAIT_MS = 500;

/** Turns a socket error or EOF into the typed error survivors see. */
function lostError(rank: number, peer: number, op: string, cause?: unknown): ChoirError {
  if (cause instanceof ChoirError) return cause;
  const why = cause instanceof Error ? `: ${cause.message}` : " (connection closed)";
  return new PeerLostError(`lost the connection to rank ${peer}${why}`, { rank, peer, op, cause });
}

/** What a channel tells its transport. */
export interface TcpChannelEvents {
  /**
   * The peer failed while this link was idle: it sent its cause (`graceful` false, act at once) or
   * its stream ended without a goodbye (`graceful` true: it crashed, or exited without closing; a
   * grace period lets a collective still running with the others finish first).
   */
  onPeerFailure(err: ChoirError, suspectOnly: boolean): void;
}

/** A {@link Channel} over one `Deno.TcpConn`. */
export class TcpChannel implements Channel {
  /** The peer's rank. */
  readonly peer: number;
  readonly #rank: number;
  readonly #conn: Deno.Conn;
  /** Bytes read and not yet taken: [#start, #end) of #in. */
  readonly #in = new Uint8Array(HEADER_BYTES + COALESCE_BYTES + TRAILER);
  readonly #inView = new DataView(this.#in.buffer);
  #start = 0;
  #end = 0;
  /** The read-ahead in flight while no receive waits (receives wait for it first). */
  #reading: Promise<void> | null = null;
  /** The peer's stream ended (or failed: #readError). */
  #eof = false;
  #readError: unknown = null;
  /** The peer said goodbye (it closed its group normally). */
  #bye = false;
  readonly #out = new Uint8Array(HEADER_BYTES + COALESCE_BYTES + TRAILER);
  readonly #outView = new DataView(this.#out.buffer);
  readonly #checksum: boolean;
  readonly #trailer = new Uint8Array(TRAILER);
  readonly #events: TcpChannelEvents | null;
  #sendTail: Promise<void> = Promise.resolve();
  #recvTail: Promise<void> = Promise.resolve();
  #sendsPending = 0;
  #recvsPending = 0;
  #sendBroken = false;
  #failed: ChoirError | null = null;
  #closed = false;

  /**
   * Wraps an established, handshaken connection to `peer`. With `checksum`, every payload is followed
   * by its CRC32C and a mismatch on receipt is a DataCorruptionError (both ends must agree). `events`
   * hears of a peer that fails while the link is idle.
   */
  constructor(
    conn: Deno.Conn,
    rank: number,
    peer: number,
    checksum = false,
    events: TcpChannelEvents | null = null,
  ) {
    this.#checksum = checksum;
    this.#conn = conn;
    this.#rank = rank;
    this.peer = peer;
    this.#events = events;
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    this.#watch();
  }

  /** Sends one frame; frames are written in call order. */
  send(header: FrameHeader, payload: Uint8Array): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    // Fast path: nothing queued, start at once (saves a microtask hop for small messages).
    const run = () => this.#doSend(header, payload);
    const p = this.#sendsPending === 0 ? run() : this.#sendTail.then(run);
    this.#sendsPending++;
    const done = p.finally(() => this.#sendsPending--);
    this.#sendTail = done.catch(() => {});
    return done;
  }

  /** Receives the next frame into `into`; frames are read in call order. */
  recv(expected: FrameHeader, into: Uint8Array): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    const run = () => this.#doRecv(expected, into);
    const p = this.#recvsPending === 0 ? run() : this.#recvTail.then(run);
    this.#recvsPending++;
    const done = p.finally(() => {
      if (--this.#recvsPending === 0) this.#watch();
    });
    this.#recvTail = done.catch(() => {});
    return done;
  }

  /** Closes the connection; later and pending operations fail with `reason` or PeerLostError. */
  close(reason?: ChoirError): void {
    if (reason && !this.#failed) this.#failed = reason;
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  /**
   * Tells the peer why this rank gives up (an abort frame after any frame being written, within
   * {@link ABORT_SEND_MS}), then closes. A peer waiting on this link then reports `reason`'s root
   * cause instead of a lost connection to this rank.
   */
  async abort(reason: ChoirError): Promise<void> {
    await this.#last(encodeCause(reason, this.#rank));
    this.close(reason);
  }

  /** Says goodbye (this rank closes its group normally: the peer must not take it for a crash), then closes. */
  async goodbye(): Promise<void> {
    await this.#last(encodeGoodbye(this.#rank));
    this.close();
  }

  /** Writes a last frame after any frame being written, within {@link ABORT_SEND_MS}. */
  async #last(cause: Uint8Array): Promise<void> {
    if (this.#closed || this.#sendBroken || this.#eof) return;
    const frame = encodeAbortFrame(cause);
    const write = this.#sendTail.then(() => this.#closed ? undefined : this.#writeAll(frame)).catch(() => {});
    await within(write, ABORT_SEND_MS);
  }

  /**
   * Fails the link for good. A failure of the stream itself (the peer went away) closes the socket at
   * once; a frame that was not what this rank expected leaves it open for the abort frame that tells
   * the peer (the group closes it right after).
   */
  #fail(op: string, cause?: unknown): ChoirError {
    if (!this.#failed) {
      this.#failed = this.#closed && !(cause instanceof ChoirError)
        ? new TransportError(`channel to rank ${this.peer} was closed`, {
          rank: this.#rank,
          peer: this.peer,
          op,
        })
        : lostError(this.#rank, this.peer, op, cause);
    }
    const peerAlive = cause instanceof ChoirError && !(cause instanceof PeerLostError) && !this.#eof;
    if (!peerAlive) this.close();
    return this.#failed;
  }

  async #doSend(h: FrameHeader, payload: Uint8Array): Promise<void> {
    if (this.#failed) throw this.#failed;
    const n = payload.byteLength;
    if (h.bytes !== n) {
      throw new TransportError(`frame header says ${h.bytes} bytes, payload has ${n}`, {
        rank: this.#rank,
        peer: this.peer,
        op: "send",
      });
    }
    try {
      const t = this.#checksum ? TRAILER : 0;
      if (n <= COALESCE_BYTES) {
        encodeHeader(h, this.#outView);
        this.#out.set(payload, HEADER_BYTES);
        if (t) this.#outView.setUint32(HEADER_BYTES + n, crc32c(payload), true);
        await this.#writeAll(this.#out.subarray(0, HEADER_BYTES + n + t));
      } else {
        encodeHeader(h, this.#outView);
        await this.#writeAll(this.#out.subarray(0, HEADER_BYTES));
        await this.#writeAll(payload);
        if (t) {
          new DataView(this.#trailer.buffer).setUint32(0, crc32c(payload), true);
          await this.#writeAll(this.#trailer);
        }
      }
    } catch (e) {
      this.#sendBroken = true;
      throw await this.#sendFailed(e);
    }
  }

  /**
   * A send failed: the peer went away. If it said why first (an abort frame), that is the error, not
   * the broken pipe: the receives already queued read up to it, then the rest of the stream is read
   * here, within {@link CAUSE_WAIT_MS}.
   */
  async #sendFailed(e: unknown): Promise<ChoirError> {
    if (this.#failed || this.#closed || e instanceof ChoirError) return this.#fail("send", e);
    const look = () => this.#failed ? Promise.resolve() : this.#readCause();
    const p = this.#recvsPending === 0 ? look() : this.#recvTail.then(look);
    this.#recvsPending++;
    const done = p.finally(() => this.#recvsPending--);
    this.#recvTail = done.catch(() => {});
    await within(done.catch(() => {}), CAUSE_WAIT_MS);
    return this.#fail("send", this.#failed ?? e);
  }

  /** Takes whole frames until the peer's abort frame (its cause becomes this link's failure) or the end. */
  async #readCause(): Promise<void> {
    try {
      while (!this.#failed) {
        await this.#fill(HEADER_BYTES);
        await this.#takeAbort("recv");
        const h = decodeHeader(this.#inView, this.#start);
        if (h === null) return;
        this.#start += HEADER_BYTES;
        // A frame no receive waits for any more: skip it.
        for (let left = h.bytes + (this.#checksum ? TRAILER : 0); left > 0;) {
          await this.#fill(1);
          const k = Math.min(left, this.#end - this.#start);
          this.#start += k;
          left -= k;
        }
      }
    } catch (e) {
      if (e instanceof ChoirError && !(e instanceof PeerLostError && e.peer === this.peer)) {
        this.#failed ??= e;
      }
    }
  }

  /** If the buffered header is an abort frame, throws the cause it carries (or, for a goodbye, a TransportError). */
  async #takeAbort(op: string): Promise<void> {
    const n = abortCauseBytes(this.#inView, this.#start);
    if (n === null) return;
    try {
      await this.#fill(HEADER_BYTES + n);
    } catch { /* cut short: decode what came */ }
    const bytes = this.#in.slice(
      this.#start + HEADER_BYTES,
      Math.min(this.#end, this.#start + HEADER_BYTES + n),
    );
    this.#start = this.#end = 0;
    if (isGoodbye(bytes)) {
      this.#bye = true;
      throw new TransportError(`rank ${this.peer} closed its process group`, {
        rank: this.#rank,
        peer: this.peer,
        op,
      });
    }
    throw decodeCause(bytes, this.#rank, op) ?? lostError(this.#rank, this.peer, op);
  }

  async #writeAll(buf: Uint8Array): Promise<void> {
    let off = 0;
    while (off < buf.byteLength) {
      off += await this.#conn.write(off === 0 ? buf : buf.subarray(off));
    }
  }

  /** Reads until at least `min` bytes (at most the buffer's size) are buffered; PeerLostError at the end of the stream. */
  async #fill(min: number): Promise<void> {
    while (this.#end - this.#start < min) {
      if (this.#reading) {
        await this.#reading;
        continue;
      }
      if (this.#eof) {
        if (this.#bye) {
          throw new TransportError(`rank ${this.peer} closed its process group`, {
            rank: this.#rank,
            peer: this.peer,
            op: "recv",
          });
        }
        throw lostError(this.#rank, this.peer, "recv", this.#readError ?? undefined);
      }
      if (this.#in.byteLength - this.#start < min) this.#compact();
      const n = await this.#conn.read(this.#in.subarray(this.#end));
      if (n === null) this.#eof = true;
      else this.#end += n;
    }
  }

  /** Moves the buffered bytes to the front. */
  #compact(): void {
    this.#in.copyWithin(0, this.#start, this.#end);
    this.#end -= this.#start;
    this.#start = 0;
  }

  async #doRecv(expected: FrameHeader, into: Uint8Array): Promise<void> {
    if (this.#failed) throw this.#failed;
    // The header is checked as soon as it is in, so a peer sending a different size is reported as
    // a mismatch instead of leaving this side waiting for bytes that never come. A small payload is
    // usually in the same read as its header; a large one is read straight into the destination.
    const t = this.#checksum ? TRAILER : 0;
    try {
      await this.#fill(HEADER_BYTES);
      await this.#takeAbort("recv");
      this.#checkFrame(expected, into);
      this.#start += HEADER_BYTES;
      const len = into.byteLength;
      if (len + t <= COALESCE_BYTES) {
        await this.#fill(len + t);
        into.set(this.#in.subarray(this.#start, this.#start + len));
        if (t) this.#verify(into, this.#inView.getUint32(this.#start + len, true));
        this.#start += len + t;
      } else {
        const have = Math.min(len, this.#end - this.#start);
        into.set(this.#in.subarray(this.#start, this.#start + have));
        this.#start += have;
        if (have < len) await this.#readExact(into.subarray(have));
        if (t) {
          await this.#fill(t);
          this.#verify(into, this.#inView.getUint32(this.#start, true));
          this.#start += t;
        }
      }
      if (this.#start === this.#end) this.#start = this.#end = 0;
    } catch (e) {
      // Whatever failed, the stream is now out of step: the channel cannot be used again.
      throw this.#fail("recv", e);
    }
  }

  /** Checks the buffered header against what the caller expects. */
  #checkFrame(expected: FrameHeader, into: Uint8Array): void {
    const ctx = { rank: this.#rank, peer: this.peer, op: "recv" };
    const got = decodeHeader(this.#inView, this.#start);
    if (got === null) {
      throw new TransportError(`rank ${this.peer} sent bytes that are not a choir frame`, ctx);
    }
    checkHeader(expected, got, { rank: this.#rank, peer: this.peer });
    if (into.byteLength !== got.bytes) {
      throw new TransportError(`receive buffer has ${into.byteLength} bytes, frame has ${got.bytes}`, ctx);
    }
  }

  /** Throws DataCorruptionError unless `payload`'s CRC32C is `sent`. */
  #verify(payload: Uint8Array, sent: number): void {
    const got = crc32c(payload);
    if (got !== sent) {
      throw new DataCorruptionError(
        `a ${payload.byteLength}-byte frame from rank ${this.peer} failed its CRC32C check ` +
          `(sent ${sent.toString(16)}, received bytes give ${got.toString(16)})`,
        { rank: this.#rank, peer: this.peer, op: "recv" },
      );
    }
  }

  /** Fills `dst` straight from the socket (the buffer is empty), never reading past its end. */
  async #readExact(dst: Uint8Array): Promise<void> {
    const len = dst.byteLength;
    let off = 0;
    while (off < len) {
      const n = await this.#conn.read(off === 0 ? dst : dst.subarray(off));
      if (n === null) {
        this.#eof = true;
        throw lostError(this.#rank, this.peer, "recv");
      }
      off += n;
    }
  }

  /**
   * Reads ahead while no receive waits: a header (usually the next frame's, which the receive then
   * takes from the buffer), the peer's abort frame, or the end of its stream. The last two are the
   * peer failing between collectives: the transport hears of it (`onPeerFailure`).
   */
  #watch(): void {
    if (this.#reading || this.#recvsPending > 0 || this.#failed || this.#closed || this.#eof) return;
    const buffered = this.#end - this.#start;
    if (buffered >= HEADER_BYTES) {
      const n = abortCauseBytes(this.#inView, this.#start);
      if (n === null || buffered >= HEADER_BYTES + n) return void this.#idleEnd();
    }
    if (this.#in.byteLength - this.#end < HEADER_BYTES) this.#compact();
    this.#reading = this.#conn.read(this.#in.subarray(this.#end)).then(
      (n) => {
        if (n === null) this.#eof = true;
        else this.#end += n;
      },
      (e) => {
        this.#readError = e;
        this.#eof = true;
      },
    ).finally(() => {
      this.#reading = null;
      if (this.#recvsPending === 0) this.#idleEnd();
    });
  }

  /** What the read-ahead found while idle: a frame (kept for its receive), an abort frame, the end, or not enough yet. */
  #idleEnd(): void {
    if (this.#failed || this.#closed) return;
    const buffered = this.#end - this.#start;
    const n = buffered >= HEADER_BYTES ? abortCauseBytes(this.#inView, this.#start) : null;
    if (buffered >= HEADER_BYTES && n === null) return; // the next frame: its receive takes it
    if (n !== null && buffered >= HEADER_BYTES + n) {
      this.#takeAbort("recv").catch((e: ChoirError) => {
        if (this.#bye) return; // closed normally: a later receive says so
        this.#failed ??= e;
        this.#events?.onPeerFailure(e, false);
      });
      return;
    }
    if (!this.#eof) return this.#watch();
    if (buffered > 0 || this.#bye) return; // what came is still for receives to take
    const err = lostError(this.#rank, this.peer, "idle", this.#readError ?? undefined);
    this.#events?.onPeerFailure(err, true);
  }
}

/** Waits for `p`, at most `ms` milliseconds. */
function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<void>((r) => timer = setTimeout(r, ms))]).then(() =>
    clearTimeout(timer)
  );
}
