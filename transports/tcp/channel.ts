/**
 * @module
 * One framed, full-duplex TCP link to a peer. Small frames travel in one write and one read with
 * their header; large payloads are read straight into the caller's buffer (no intermediate copy).
 */

import { ChoirError, DataCorruptionError, PeerLostError, TransportError } from "../../errors.ts";
import { crc32c } from "../crc32c.ts";
import { checkHeader, decodeHeader, encodeHeader, type FrameHeader, HEADER_BYTES } from "../frame.ts";
import type { Channel } from "../transport.ts";

/** Frames up to this payload size are copied next to their header and written in one call. */
const COALESCE_BYTES = 32 * 1024;
/** Bytes of the CRC32C trailer after each payload when checksums are on. */
const TRAILER = 4;

/** Turns a socket error or EOF into the typed error survivors see. */
function lostError(rank: number, peer: number, op: string, cause?: unknown): ChoirError {
  if (cause instanceof ChoirError) return cause;
  const why = cause instanceof Error ? `: ${cause.message}` : " (connection closed)";
  return new PeerLostError(`lost the connection to rank ${peer}${why}`, { rank, peer, op, cause });
}

/** A {@link Channel} over one `Deno.TcpConn`. */
export class TcpChannel implements Channel {
  /** The peer's rank. */
  readonly peer: number;
  readonly #rank: number;
  readonly #conn: Deno.Conn;
  readonly #in = new Uint8Array(HEADER_BYTES + COALESCE_BYTES + TRAILER);
  readonly #inView = new DataView(this.#in.buffer);
  readonly #out = new Uint8Array(HEADER_BYTES + COALESCE_BYTES + TRAILER);
  readonly #outView = new DataView(this.#out.buffer);
  readonly #checksum: boolean;
  readonly #trailer = new Uint8Array(TRAILER);
  #sendTail: Promise<void> = Promise.resolve();
  #recvTail: Promise<void> = Promise.resolve();
  #sendsPending = 0;
  #recvsPending = 0;
  #failed: ChoirError | null = null;
  #closed = false;

  /**
   * Wraps an established, handshaken connection to `peer`. With `checksum`, every payload is followed
   * by its CRC32C and a mismatch on receipt is a DataCorruptionError (both ends must agree).
   */
  constructor(conn: Deno.Conn, rank: number, peer: number, checksum = false) {
    this.#checksum = checksum;
    this.#conn = conn;
    this.#rank = rank;
    this.peer = peer;
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
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
    const done = p.finally(() => this.#recvsPending--);
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
    this.close();
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
      throw this.#fail("send", e);
    }
  }

  async #writeAll(buf: Uint8Array): Promise<void> {
    let off = 0;
    while (off < buf.byteLength) {
      off += await this.#conn.write(off === 0 ? buf : buf.subarray(off));
    }
  }

  async #doRecv(expected: FrameHeader, into: Uint8Array): Promise<void> {
    if (this.#failed) throw this.#failed;
    // The receiver knows the frame's size from what it expects, so it reads exactly that much:
    // header and small payload together, a large payload straight into the destination. The
    // header is checked as soon as it is in, so a peer sending a different size is reported as
    // a mismatch instead of leaving this side waiting for bytes that never come.
    const small = expected.bytes <= COALESCE_BYTES;
    const t = this.#checksum ? TRAILER : 0;
    const head = this.#in.subarray(0, HEADER_BYTES + (small ? expected.bytes + t : 0));
    try {
      let off = 0;
      let checked = false;
      while (off < head.byteLength) {
        const n = await this.#conn.read(off === 0 ? head : head.subarray(off));
        if (n === null) throw lostError(this.#rank, this.peer, "recv");
        off += n;
        if (!checked && off >= HEADER_BYTES) {
          this.#checkFrame(expected, into);
          checked = true;
        }
      }
      if (small) {
        into.set(head.subarray(HEADER_BYTES, HEADER_BYTES + expected.bytes));
        if (t) this.#verify(into, this.#inView.getUint32(HEADER_BYTES + expected.bytes, true));
      } else {
        await this.#readExact(into);
        if (t) {
          await this.#readExact(this.#trailer);
          this.#verify(into, new DataView(this.#trailer.buffer).getUint32(0, true));
        }
      }
    } catch (e) {
      // Whatever failed, the stream is now out of step: the channel cannot be used again.
      throw this.#fail("recv", e);
    }
  }

  /** Checks the header in the input buffer against what the caller expects. */
  #checkFrame(expected: FrameHeader, into: Uint8Array): void {
    const ctx = { rank: this.#rank, peer: this.peer, op: "recv" };
    const got = decodeHeader(this.#inView);
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

  /** Fills `dst` from the socket, never reading past its end. */
  async #readExact(dst: Uint8Array): Promise<void> {
    const len = dst.byteLength;
    let off = 0;
    while (off < len) {
      const n = await this.#conn.read(off === 0 ? dst : dst.subarray(off));
      if (n === null) throw lostError(this.#rank, this.peer, "recv");
      off += n;
    }
  }
}
