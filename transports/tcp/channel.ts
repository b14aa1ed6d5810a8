/**
 * @module
 * One framed, full-duplex TCP link to a peer. Small frames travel in one write and one read with
 * their header; large payloads are read straight into the caller's buffer (no intermediate copy).
 * A rank that gives up sends an abort frame with its cause (`abort_cause.ts`) before it closes; a
 * receive that meets it, or a send that fails and then finds it, reports that cause.
 *
 * Where libc is reachable through FFI (socket_fd.ts), every read and write first tries a nonblocking
 * libc call on the connection's socket, and a call that would block is polled for a bounded spin
 * before it sleeps in Deno's `read`/`write` (socket_poller.ts): a rank woken by a socket costs tens of
 * microseconds more than one that polls.
 */

import { ChoirError, DataCorruptionError, PeerLostError, TransportError } from "../../errors.ts";
import { crc32c } from "../crc32c.ts";
import { decodeCause, encodeCause } from "../abort_cause.ts";
import { checkHeader, decodeHeader, encodeHeader, type FrameHeader, HEADER_BYTES } from "../frame.ts";
import { abortCauseBytes, encodeAbortFrame } from "../frame.ts";
import type { Channel } from "../transport.ts";
import { findSocketFd } from "./socket_fd.ts";
import { SocketPoller } from "./socket_poller.ts";

/** Frames up to this payload size are copied next to their header and written in one call. */
const COALESCE_BYTES = 32 * 1024;
/**
 * Frames up to this payload size are exchanged by polling both directions from the calling thread
 * (exchange); larger ones go through the queued send and receive.
 */
const SYNC_EXCHANGE_BYTES = 256 * 1024;
/** A link's frame buffers at first: a header and a small payload. */
const FIRST_FRAME_BYTES = 512;

/** The next size of a frame buffer of `now` bytes that must hold `need`: doubling, at most the largest frame. */
function grownSize(now: number, need: number): number {
  return Math.min(Math.max(need, 2 * now), HEADER_BYTES + COALESCE_BYTES + TRAILER);
}
/** A frame header in 32-bit words. */
const HEADER_WORDS = HEADER_BYTES / 4;
/** Ignores a value (a settled pair of promises resolves to nothing). */
const noop = (): void => {};
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

/** A {@link Channel} over one `Deno.TcpConn`. */
export class TcpChannel implements Channel {
  /** The peer's rank. */
  readonly peer: number;
  readonly #rank: number;
  readonly #conn: Deno.Conn;
  // Frame buffers start small and grow to what the frames need (header, coalesced payload, trailer):
  // a job of thousands of ranks holds thousands of links, most carrying only small frames, and two 32 KiB
  // buffers each cost 1.7 ms a link in allocation and collection at 4,096 simulated ranks.
  #in = new Uint8Array(FIRST_FRAME_BYTES);
  #inView = new DataView(this.#in.buffer);
  #out = new Uint8Array(FIRST_FRAME_BYTES);
  #outView = new DataView(this.#out.buffer);
  /** The headers' words, for {@link exchange}'s quick comparison. */
  #inWords = new Int32Array(this.#in.buffer, 0, HEADER_WORDS);
  #outWords = new Int32Array(this.#out.buffer, 0, HEADER_WORDS);
  readonly #checksum: boolean;
  readonly #trailer = new Uint8Array(TRAILER);
  #sendTail: Promise<void> = Promise.resolve();
  #recvTail: Promise<void> = Promise.resolve();
  #sendsPending = 0;
  #recvsPending = 0;
  #failed: ChoirError | null = null;
  #closed = false;
  /** A send failed: the socket cannot carry an abort frame any more. */
  #sendBroken = false;
  /** Nonblocking libc calls on the socket, or null (Deno's calls only). */
  readonly #poller: SocketPoller | null;

  /**
   * Wraps an established, handshaken connection to `peer`. With `checksum`, every payload is followed
   * by its CRC32C and a mismatch on receipt is a DataCorruptionError (both ends must agree). With
   * `spinUs` (not null), reads and writes go through nonblocking libc calls where the socket is found
   * (socket_fd.ts), and one that would block polls for up to `spinUs` microseconds before it sleeps
   * (0: one try; polling only pays where every rank of this host has a core of its own); null keeps
   * to Deno's calls and, unless `findSocket`, skips the search for the socket. A socket found is tuned
   * for its route either way (a same-host one gets Reno, congestion.ts). With `yields`, a poll that
   * finds nothing gives the core away first (`sched_yield`: ranks that share cores).
   */
  constructor(
    conn: Deno.Conn,
    rank: number,
    peer: number,
    checksum = false,
    spinUs: number | null = null,
    findSocket = spinUs !== null,
    yields = false,
  ) {
    this.#checksum = checksum;
    this.#conn = conn;
    this.#rank = rank;
    this.peer = peer;
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    let poller: SocketPoller | null = null;
    try {
      const fd = findSocket ? findSocketFd(conn) : null;
      if (fd && spinUs !== null) poller = new SocketPoller(fd, conn, spinUs, yields);
    } catch { /* Deno's calls only */ }
    this.#poller = poller;
  }

  /** Sends one frame; frames are written in call order. */
  send(header: FrameHeader, payload: Uint8Array): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    return this.#queueSend(() => this.#doSend(header, payload));
  }

  /** Receives the next frame into `into`; frames are read in call order. */
  recv(expected: FrameHeader, into: Uint8Array): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    return this.#queueRecv(() => this.#doRecv(expected, into, 0));
  }

  /**
   * Sends `payload` under `header` and receives the peer's frame of the same header into `into` (the
   * two halves of a 2-rank exchange), polling both directions from this call while nothing else is
   * queued: a small frame goes out in one libc call with its header and its reply is read into the
   * frame buffer; a larger one (up to {@link SYNC_EXCHANGE_BYTES}) is sent from `payload` and read
   * straight into `into` once the reply's header has matched. `undefined` means both halves are done
   * (no promise, no microtask turn). The polling gives up after the link's spin time without progress
   * (so timers wait at most that), and the rest goes through the queued send and receive, whose
   * promise then settles the call. Errors are those of {@link send} and {@link recv} (a header that
   * differs is a CollectiveMismatchError, and `into` is left untouched).
   */
  exchange(header: FrameHeader, payload: Uint8Array, into: Uint8Array): Promise<void> | undefined {
    const n = payload.byteLength;
    const fd = this.#poller?.fd;
    if (
      !fd || this.#failed || this.#closed || this.#checksum || this.#sendsPending || this.#recvsPending ||
      n > SYNC_EXCHANGE_BYTES || header.bytes !== n || into.byteLength !== n
    ) {
      return Promise.all([this.send(header, payload), this.recv(header, into)]).then(noop);
    }
    const small = n <= COALESCE_BYTES;
    // What travels through the frame buffers: header and payload when small, else the header alone.
    const head = small ? HEADER_BYTES + n : HEADER_BYTES;
    const size = HEADER_BYTES + n;
    if (this.#out.byteLength < head) this.#growOut(head);
    if (this.#in.byteLength < head) this.#growIn(head);
    const out = this.#out;
    const got = this.#in;
    encodeHeader(header, this.#outView);
    if (small) out.set(payload, HEADER_BYTES);
    // Both sides of a matched exchange stamp the same header: the reply's first HEADER_BYTES must
    // equal ours, word for word; anything else takes the full check below.
    const mine = this.#outWords;
    const theirs = this.#inWords;
    let sent = 0;
    let off = 0;
    let same = false;
    let until = 0;
    try {
      for (;;) {
        let moved = 0;
        if (sent < size) {
          const k = sent < head
            ? fd.trySend(out.subarray(sent, head))
            : fd.trySend(payload.subarray(sent - HEADER_BYTES));
          sent += k;
          moved += k;
        }
        // A large reply's payload is read only once its header has matched: `into` stays untouched
        // by a frame that is not the one expected.
        if (off < head || (same && off < size)) {
          const r = off < head
            ? fd.tryRecv(got.subarray(off, head))
            : fd.tryRecv(into.subarray(off - HEADER_BYTES));
          if (r < 0) throw lostError(this.#rank, this.peer, "recv");
          off += r;
          moved += r;
        }
        if (off >= HEADER_BYTES && !same) {
          same = true;
          for (let i = 0; i < HEADER_WORDS; i++) if (mine[i] !== theirs[i]) same = false;
          if (!same) break;
        }
        if (sent === size && off === size) {
          if (small) into.set(got.subarray(HEADER_BYTES, size));
          return undefined;
        }
        // The clock is read only when a try moved nothing (a reply usually is there); bytes that
        // move restart the spin.
        if (moved > 0) {
          until = 0;
          continue;
        }
        if (this.#poller!.yields) fd.yieldCore();
        const now = performance.now();
        if (until === 0) until = now + this.#poller!.spinUs / 1000;
        else if (now > until) break;
      }
    } catch (e) {
      return Promise.reject(this.#fail("recv", e));
    }
    // Late, or not the frame expected: finish through the queues (which check the header in full).
    const s = sent < size
      ? this.#queueSend(() =>
        this.#finishSend(sent < head ? out.subarray(sent, head) : null, small ? null : payload, sent - head)
      )
      : undefined;
    const r = this.#queueRecv(() =>
      this.#doRecv(header, into, Math.min(off, head), Math.max(0, off - HEADER_BYTES))
    );
    return s ? Promise.all([s, r]).then(noop) : r;
  }

  /** Runs `run` after the sends queued before it (at once when none is). */
  #queueSend(run: () => Promise<void>): Promise<void> {
    // Fast path: nothing queued, start at once (saves a microtask hop for small messages).
    const p = this.#sendsPending === 0 ? run() : this.#sendTail.then(run);
    this.#sendsPending++;
    const done = p.finally(() => this.#sendsPending--);
    this.#sendTail = done.catch(() => {});
    return done;
  }

  /** Runs `run` after the receives queued before it (at once when none is). */
  #queueRecv(run: () => Promise<void>): Promise<void> {
    const p = this.#recvsPending === 0 ? run() : this.#recvTail.then(run);
    this.#recvsPending++;
    const done = p.finally(() => this.#recvsPending--);
    this.#recvTail = done.catch(() => {});
    return done;
  }

  /**
   * Writes the rest of a frame {@link exchange} started: what is left of the frame buffer's part
   * (`head`, or null when it went out), then a large payload from its byte `from` on (negative: all).
   */
  async #finishSend(head: Uint8Array | null, payload: Uint8Array | null, from: number): Promise<void> {
    try {
      if (head) await this.#writeAll(head);
      if (payload) await this.#writeAll(from > 0 ? payload.subarray(from) : payload);
    } catch (e) {
      this.#sendBroken = true;
      throw await this.#sendFailed(e);
    }
  }

  /** Closes the connection; later and pending operations fail with `reason` or PeerLostError. */
  close(reason?: ChoirError): void {
    if (reason && !this.#failed) this.#failed = reason;
    if (this.#closed) return;
    this.#closed = true;
    // First: a closed descriptor's number may soon belong to another file.
    this.#poller?.close();
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
    if (!this.#closed && !this.#sendBroken) {
      const frame = encodeAbortFrame(encodeCause(reason, this.#rank));
      const write = this.#sendTail.then(() => this.#closed ? undefined : this.#writeAll(frame)).catch(
        () => {},
      );
      await within(write, ABORT_SEND_MS);
    }
    this.close(reason);
  }

  /**
   * Fails the link for good. A failure of the stream itself closes the socket at once; a frame that
   * was not what this rank expected leaves it open for the abort frame that tells the peer (the
   * group closes it right after).
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
    const peerAlive = cause instanceof ChoirError && !(cause instanceof PeerLostError);
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
        if (this.#out.byteLength < HEADER_BYTES + n + t) this.#growOut(HEADER_BYTES + n + t);
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

  /** Reads whole frames until the peer's abort frame (its cause becomes this link's failure) or the end. */
  async #readCause(): Promise<void> {
    const head = this.#in.subarray(0, HEADER_BYTES);
    try {
      while (!this.#failed) {
        await this.#readExact(head);
        const n = abortCauseBytes(this.#inView);
        if (n !== null) throw await this.#abortCause(n, new Uint8Array(0));
        const h = decodeHeader(this.#inView);
        if (h === null) return;
        // A frame no receive waits for any more: skip it.
        for (let left = h.bytes + (this.#checksum ? TRAILER : 0); left > 0;) {
          const part = this.#in.subarray(0, Math.min(left, this.#in.byteLength));
          await this.#readExact(part);
          left -= part.byteLength;
        }
      }
    } catch (err) {
      if (err instanceof ChoirError && !(err instanceof PeerLostError && err.peer === this.peer)) {
        this.#failed ??= err;
      }
    }
  }

  /** The peer's cause from an abort frame of `n` bytes, of which `have` are already read. */
  async #abortCause(n: number, have: Uint8Array): Promise<ChoirError> {
    const bytes = new Uint8Array(n);
    bytes.set(have.subarray(0, n));
    if (have.byteLength < n) {
      try {
        await this.#readExact(bytes.subarray(have.byteLength));
      } catch { /* cut short: decode what came */ }
    }
    return decodeCause(bytes, this.#rank, "recv") ?? lostError(this.#rank, this.peer, "recv");
  }

  /** A larger input buffer (only between frames: nothing holds a view of the old one then). */
  #growIn(size: number): void {
    this.#in = new Uint8Array(grownSize(this.#in.byteLength, size));
    this.#inView = new DataView(this.#in.buffer);
    this.#inWords = new Int32Array(this.#in.buffer, 0, HEADER_WORDS);
  }

  /** A larger output buffer (sends run one at a time). */
  #growOut(size: number): void {
    this.#out = new Uint8Array(grownSize(this.#out.byteLength, size));
    this.#outView = new DataView(this.#out.buffer);
    this.#outWords = new Int32Array(this.#out.buffer, 0, HEADER_WORDS);
  }

  async #writeAll(buf: Uint8Array): Promise<void> {
    let off = 0;
    const p = this.#poller;
    while (off < buf.byteLength) {
      const rest = off === 0 ? buf : buf.subarray(off);
      off += await (p ? p.write(rest) : this.#conn.write(rest));
    }
  }

  /** Reads some bytes into `buf` (null: the peer closed). */
  #readSome(buf: Uint8Array): Promise<number | null> {
    return this.#poller ? this.#poller.read(buf) : this.#conn.read(buf);
  }

  /**
   * Receives a frame of which `start` bytes (header first) are already in the input buffer and, for
   * a large payload, its first `landed` bytes already in `into`.
   */
  async #doRecv(expected: FrameHeader, into: Uint8Array, start: number, landed = 0): Promise<void> {
    if (this.#failed) throw this.#failed;
    // The receiver knows the frame's size from what it expects, so it reads exactly that much:
    // header and small payload together, a large payload straight into the destination. The
    // header is checked as soon as it is in, so a peer sending a different size is reported as
    // a mismatch instead of leaving this side waiting for bytes that never come.
    const small = expected.bytes <= COALESCE_BYTES;
    const t = this.#checksum ? TRAILER : 0;
    const size = HEADER_BYTES + (small ? expected.bytes + t : 0);
    if (this.#in.byteLength < size) this.#growIn(size);
    const head = this.#in.subarray(0, size);
    try {
      let off = start;
      let checked = false;
      for (;;) {
        if (!checked && off >= HEADER_BYTES) {
          const cause = abortCauseBytes(this.#inView);
          if (cause !== null) throw await this.#abortCause(cause, head.subarray(HEADER_BYTES, off));
          this.#checkFrame(expected, into);
          checked = true;
        }
        if (off >= head.byteLength) break;
        const n = await this.#readSome(off === 0 ? head : head.subarray(off));
        if (n === null) throw lostError(this.#rank, this.peer, "recv");
        off += n;
      }
      if (small) {
        into.set(head.subarray(HEADER_BYTES, HEADER_BYTES + expected.bytes));
        if (t) this.#verify(into, this.#inView.getUint32(HEADER_BYTES + expected.bytes, true));
      } else {
        await this.#readExact(landed > 0 ? into.subarray(landed) : into);
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
      const n = await this.#readSome(off === 0 ? dst : dst.subarray(off));
      if (n === null) throw lostError(this.#rank, this.peer, "recv");
      off += n;
    }
  }
}

/** Waits for `p`, at most `ms` milliseconds. */
function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<void>((r) => timer = setTimeout(r, ms))]).then(() =>
    clearTimeout(timer)
  );
}
