/**
 * @module
 * One shared-memory link to a peer: ordered send and receive queues whose head operations are copied
 * through the two rings in pieces. Waiting, and deciding when a peer is gone, are left to the engine.
 */

import { ChoirError, CollectiveTimeoutError, PeerLostError, TransportError } from "../../errors.ts";
import { decodeCause, encodeCause } from "../abort_cause.ts";
import { checkHeader, decodeHeader, encodeHeader, type FrameHeader, HEADER_BYTES } from "../frame.ts";
import { abortCauseBytes, encodeAbortFrame } from "../frame.ts";
import type { Channel } from "../transport.ts";
import type { Bells } from "./doorbell.ts";
import type { RingReader, RingWriter } from "./ring.ts";

/**
 * Bytes a frame header occupies in a ring: the 40-byte header padded to a cache line, so that every
 * header is read in place without wrapping and every payload starts aligned.
 */
const SLOT = 64;

/**
 * The most bytes a channel copies into a ring of `ringBytes` before publishing them: a quarter of the
 * ring (so the reader starts early), at least one slot and at most 1 MiB.
 */
export function chunkBytesFor(ringBytes: number): number {
  return Math.max(SLOT, Math.min(ringBytes / 4, 1 << 20));
}

/** What a channel needs from its transport. */
export interface ChannelHost {
  /** This rank. */
  readonly rank: number;
  /** How long an operation may make no progress before it fails. */
  readonly timeoutMs: number;
  /** The most bytes copied before publishing, so the other side can start on them. */
  readonly chunkBytes: number;
  /** A view of the whole segment (headers are encoded and decoded in place). */
  readonly view: DataView;
  /** The group's doorbells. */
  readonly bells: Bells;
  /** Starts the progress engine if it is idle. */
  kick(): void;
  /** Why `peer` can no longer take part (it closed or exited), or null while it can. */
  peerGone(peer: number): string | null;
}

interface Op {
  header: FrameHeader;
  buf: Uint8Array;
  /** Payload bytes in the ring, padded so the next header starts on a slot boundary. */
  padded: number;
  /** Payload bytes (padded) already copied. */
  off: number;
  started: boolean;
  resolve: () => void;
  reject: (e: Error) => void;
}

const NOTHING = 0;
const PARTIAL = 1;
const DONE = 2;
type Step = typeof NOTHING | typeof PARTIAL | typeof DONE;

const padded = (n: number) => Math.ceil(n / SLOT) * SLOT;
const noop = () => {};

/** A {@link Channel} over the ring pair between this rank and `peer`. */
export class ShmChannel implements Channel {
  /** The peer's rank. */
  readonly peer: number;
  readonly #host: ChannelHost;
  readonly #out: RingWriter;
  readonly #in: RingReader;
  #sends: Op[] = [];
  #recvs: Op[] = [];
  #sendMoved = 0;
  #recvMoved = 0;
  #failed: ChoirError | null = null;

  /** Binds the rings to (`out`) and from (`inbound`) `peer`. */
  constructor(host: ChannelHost, peer: number, out: RingWriter, inbound: RingReader) {
    this.#host = host;
    this.peer = peer;
    this.#out = out;
    this.#in = inbound;
  }

  /** Sends one frame; frames are delivered in call order. Resolves once the payload is in the ring. */
  send(header: FrameHeader, payload: Uint8Array): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (header.bytes !== payload.byteLength) {
      return Promise.reject(
        new TransportError(`frame header says ${header.bytes} bytes, payload has ${payload.byteLength}`, {
          rank: this.#host.rank,
          peer: this.peer,
          op: "send",
        }),
      );
    }
    return this.#post(this.#sends, header, payload, true);
  }

  /** Receives the next frame into `into` (exactly the payload size); receives complete in call order. */
  recv(expected: FrameHeader, into: Uint8Array): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (into.byteLength !== expected.bytes) {
      return Promise.reject(
        new TransportError(`receive buffer has ${into.byteLength} bytes, frame has ${expected.bytes}`, {
          rank: this.#host.rank,
          peer: this.peer,
          op: "recv",
        }),
      );
    }
    return this.#post(this.#recvs, expected, into, false);
  }

  /** Whether sends or receives are queued. */
  get pending(): boolean {
    return this.#sends.length + this.#recvs.length > 0;
  }

  /** Advances the queued operations as far as the rings allow; true if anything changed. */
  progress(): boolean {
    if (this.#failed) return false;
    try {
      const s = this.#drain(this.#sends, true);
      const r = this.#drain(this.#recvs, false);
      return s || r;
    } catch (e) {
      this.fail(e);
      return true;
    }
  }

  /**
   * Fails the channel when its queued work can no longer complete: the peer left (after taking
   * whatever it sent before going), or nothing moved for the timeout.
   */
  check(now: number): void {
    if (this.#failed || !this.pending) return;
    const op = this.#recvs.length ? "recv" : "send";
    const ctx = { rank: this.#host.rank, peer: this.peer, op };
    const why = this.#in.closed || this.#out.closed
      ? `rank ${this.peer} closed the channel`
      : this.#host.peerGone(this.peer);
    if (why !== null) {
      this.progress();
      if (!this.#failed && this.pending) {
        this.fail(new PeerLostError(`${why} while a ${op} was pending`, ctx));
      }
      return;
    }
    const since = Math.min(
      this.#sends.length ? this.#sendMoved : Infinity,
      this.#recvs.length ? this.#recvMoved : Infinity,
    );
    if (now - since > this.#host.timeoutMs) {
      this.fail(
        new CollectiveTimeoutError(
          `no progress on the channel to rank ${this.peer}`,
          this.#host.timeoutMs,
          ctx,
        ),
      );
    }
  }

  /**
   * Tells the peer why this rank gives up: an abort frame in the ring to it (when no frame is half
   * written and it fits), which a receive of the peer's reads instead of a frame it expected. Then
   * fails the channel with `reason`.
   */
  abort(reason: ChoirError): void {
    if (!this.#failed && !this.#out.closed && (this.#sends.length === 0 || !this.#sends[0].started)) {
      const frame = encodeAbortFrame(encodeCause(reason, this.#host.rank));
      const header = frame.subarray(0, HEADER_BYTES);
      const cause = frame.subarray(HEADER_BYTES);
      const w = this.#out;
      if (w.free() >= SLOT + padded(cause.byteLength)) {
        w.write(0, header);
        w.write(SLOT, cause);
        w.publish(SLOT + padded(cause.byteLength));
      }
    }
    this.fail(reason);
  }

  /**
   * The cause the peer left in its ring to this rank (see {@link abort}), without taking it, or null:
   * what a rank waiting for that peer elsewhere (the shared arena) reports instead of "it closed".
   */
  peerCause(op: string): ChoirError | null {
    const r = this.#in;
    if (r.available() < SLOT) return null;
    const n = abortCauseBytes(this.#host.view, r.offset(0));
    if (n === null || r.available() < SLOT + n) return null;
    const bytes = new Uint8Array(n);
    r.read(SLOT, bytes);
    return decodeCause(bytes, this.#host.rank, op);
  }

  /**
   * Fails the channel for good: queued and later operations reject with `err`, and the peer is told
   * (its own waits on this channel then fail instead of timing out).
   */
  fail(err: unknown): ChoirError {
    if (this.#failed) return this.#failed;
    const failed = err instanceof ChoirError ? err : new PeerLostError(
      `channel to rank ${this.peer} failed: ${(err as Error)?.message ?? err}`,
      { rank: this.#host.rank, peer: this.peer, op: "shm", cause: err },
    );
    this.#failed = failed;
    const ops = [...this.#sends, ...this.#recvs];
    this.#sends = [];
    this.#recvs = [];
    for (const op of ops) op.reject(failed);
    this.#out.close();
    this.#in.close();
    this.#host.bells.ring(this.peer);
    return failed;
  }

  #post(queue: Op[], header: FrameHeader, buf: Uint8Array, isSend: boolean): Promise<void> {
    const op: Op = {
      header,
      buf,
      padded: padded(buf.byteLength),
      off: 0,
      started: false,
      resolve: noop,
      reject: noop,
    };
    if (queue.length === 0) {
      // Fast path: an idle direction tries at once; most small frames finish here with no engine turn.
      if (isSend) this.#sendMoved = performance.now();
      else this.#recvMoved = performance.now();
      try {
        if (this.#step(op, isSend) === DONE) return Promise.resolve();
      } catch (e) {
        return Promise.reject(this.fail(e));
      }
    }
    const p = new Promise<void>((resolve, reject) => {
      op.resolve = resolve;
      op.reject = reject;
    });
    queue.push(op);
    this.#host.kick();
    return p;
  }

  #drain(queue: Op[], isSend: boolean): boolean {
    let moved = false;
    while (queue.length) {
      const op = queue[0];
      const r = this.#step(op, isSend);
      if (r === NOTHING) break;
      moved = true;
      if (isSend) this.#sendMoved = performance.now();
      else this.#recvMoved = performance.now();
      if (r === PARTIAL) break;
      queue.shift();
      op.resolve();
    }
    return moved;
  }

  #step(op: Op, isSend: boolean): Step {
    return isSend ? this.#stepSend(op) : this.#stepRecv(op);
  }

  #stepSend(op: Op): Step {
    const w = this.#out;
    const chunk = this.#host.chunkBytes;
    let free = w.free();
    let moved = false;
    if (!op.started) {
      if (free < SLOT) return NOTHING;
      encodeHeader(op.header, this.#host.view, w.offset(0));
      if (SLOT + op.padded <= free && op.padded <= chunk) {
        if (op.buf.byteLength) w.write(SLOT, op.buf);
        w.publish(SLOT + op.padded);
        this.#host.bells.ring(this.peer);
        return DONE;
      }
      // A large frame: publish the header alone so the receiver checks it before any payload.
      w.publish(SLOT);
      this.#host.bells.ring(this.peer);
      op.started = true;
      free -= SLOT;
      moved = true;
    }
    while (op.off < op.padded && free > 0) {
      const n = Math.min(free, op.padded - op.off, chunk);
      const real = Math.min(n, op.buf.byteLength - op.off);
      if (real > 0) w.write(0, op.buf.subarray(op.off, op.off + real));
      w.publish(n);
      this.#host.bells.ring(this.peer);
      op.off += n;
      free -= n;
      moved = true;
    }
    return op.off === op.padded ? DONE : moved ? PARTIAL : NOTHING;
  }

  #stepRecv(op: Op): Step {
    const r = this.#in;
    const chunk = this.#host.chunkBytes;
    let avail = r.available();
    let moved = false;
    if (!op.started) {
      if (avail < SLOT) return NOTHING;
      this.#checkFrame(op, r.offset(0));
      if (SLOT + op.padded <= avail && op.padded <= chunk) {
        if (op.buf.byteLength) r.read(SLOT, op.buf);
        r.release(SLOT + op.padded);
        this.#host.bells.ring(this.peer);
        return DONE;
      }
      r.release(SLOT);
      this.#host.bells.ring(this.peer);
      op.started = true;
      avail -= SLOT;
      moved = true;
    }
    while (op.off < op.padded && avail > 0) {
      const n = Math.min(avail, op.padded - op.off, chunk);
      const real = Math.min(n, op.buf.byteLength - op.off);
      if (real > 0) r.read(0, op.buf.subarray(op.off, op.off + real));
      r.release(n);
      this.#host.bells.ring(this.peer);
      op.off += n;
      avail -= n;
      moved = true;
    }
    return op.off === op.padded ? DONE : moved ? PARTIAL : NOTHING;
  }

  /** Checks the header at `offset` against what the receive expects, before taking any payload. */
  #checkFrame(op: Op, offset: number): void {
    const ctx = { rank: this.#host.rank, peer: this.peer };
    if (abortCauseBytes(this.#host.view, offset) !== null) {
      throw this.peerCause("recv") ?? new PeerLostError(`rank ${this.peer} gave up`, { ...ctx, op: "recv" });
    }
    const got = decodeHeader(this.#host.view, offset);
    if (got === null) {
      throw new TransportError(`rank ${this.peer} wrote bytes that are not a choir frame`, {
        ...ctx,
        op: "recv",
      });
    }
    checkHeader(op.header, got, ctx);
  }
}
