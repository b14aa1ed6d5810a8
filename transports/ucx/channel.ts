/**
 * @module
 * One framed link to a peer over UCP tag matching, opened by a hello in which both ranks prove they hold
 * the job token and each gives the other the secret id to send to it under. Frame k to a peer uses tags
 * (id, k) (tags.ts): the header (with the payload when small) is one message, a large payload a second
 * one received in place, so UCX can use rendezvous straight into the caller's buffer. Progress and
 * waiting are the engine's.
 */

import {
  AuthError,
  ChoirError,
  CollectiveMismatchError,
  PeerLostError,
  TransportError,
} from "../../errors.ts";
import { hmac, nonce, PROOF_BYTES } from "../proof.ts";
import { checkToken, constantTimeEqual } from "../token.ts";
import { ABORT_MASK, abortTag, frameTag, helloTag, senderId } from "./tags.ts";
import { decodeCause, encodeCause, MAX_CAUSE_BYTES } from "../abort_cause.ts";
import { checkHeader, decodeHeader, encodeHeader, type FrameHeader, HEADER_BYTES } from "../frame.ts";
import { abortCauseBytes, encodeAbortFrame } from "../frame.ts";
import type { Channel } from "../transport.ts";
import type { Pending, UcxEngine } from "./engine.ts";
import type { RegistrationCache } from "./memreg.ts";
import { UCS_OK, ucxError } from "./status.ts";
import type { UcxWorker } from "./worker.ts";

/**
 * Payloads up to this size travel in the header's message (one message, one copy on each side); with
 * the header that is 8 KiB, which UCX 1.13 still sends eagerly over shared memory and TCP.
 */
const INLINE_BYTES = 8192 - HEADER_BYTES;
/** How long a rank whose send failed looks for the cause its peer sent, ms. */
const CAUSE_WAIT_MS = 150;
/** Payloads from this size on use a registered buffer from the cache. */
const REGISTER_BYTES = 1 << 20;

/** "CHUX": the first word of a hello. */
const HELLO_MAGIC = 0x43485558;
/**
 * A hello: magic, group id, group size, sender rank, receiver rank, and the id the receiver is to send
 * to the sender under (u32 each, little-endian), then the sender's nonce.
 */
const HELLO_FIXED = 24;
const HELLO_BYTES = HELLO_FIXED + PROOF_BYTES;
/** The label of a hello's proof: HMAC(token, label, the hello received, the hello sent). */
const PROOF_LABEL = "choir/ucx/hello";

/** What a channel needs from its transport. */
export interface UcxChannelHost {
  /** The worker. */
  readonly worker: UcxWorker;
  /** The engine that drives requests. */
  readonly engine: UcxEngine;
  /** Registrations of large buffers. */
  readonly cache: RegistrationCache;
}

/** A {@link Channel} over UCP tag sends and receives. */
export class UcxChannel implements Channel {
  /** The peer's rank. */
  readonly peer: number;
  readonly #rank: number;
  readonly #host: UcxChannelHost;
  #sendSeq = 0;
  #recvSeq = 0;
  #sendTail: Promise<void> = Promise.resolve();
  #recvTail: Promise<void> = Promise.resolve();
  /** The id the peer gave this rank to send under (known after the hello). */
  #sendId: number | null = null;
  /** The id this rank gave the peer to send under. */
  #recvId = 0;
  #failed: ChoirError | null = null;
  /** The peer's endpoint failed (the channel fails with this unless the peer's own cause arrives). */
  #lost: ChoirError | null = null;
  readonly #stages: Uint8Array[] = [];

  /** A channel from `rank` to `peer`; the endpoint must exist in the host's worker. */
  constructor(host: UcxChannelHost, rank: number, peer: number) {
    this.#host = host;
    this.#rank = rank;
    this.peer = peer;
  }

  /** The error this channel failed with, if any. */
  get failed(): ChoirError | null {
    return this.#failed;
  }

  /**
   * Tells the peer why this rank gives up: an abort frame sent as the next frame (the tag the peer's
   * next receive from this rank matches), waited for within `ms`. A peer waiting on this link then
   * reports the root cause instead of a failed endpoint. Then fails the channel with `reason`.
   */
  async abort(reason: ChoirError, ms: number): Promise<void> {
    // A peer that sent a frame this rank did not expect is alive and must hear why too. A peer whose
    // hello has not completed knows no id to accept it under.
    if (this.#sendId !== null && (!this.#failed || this.#failed instanceof CollectiveMismatchError)) {
      const sent = this.#post(
        encodeAbortFrame(encodeCause(reason, this.#rank)),
        abortTag(this.#sendId),
        false,
      )
        .catch(() => {});
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([sent, new Promise<void>((r) => timer = setTimeout(r, ms))]);
      clearTimeout(timer);
    }
    this.fail(reason);
  }

  /** Fails the channel: pending and later operations reject with `e`. */
  fail(e: ChoirError): void {
    if (this.#failed) return;
    this.#failed = e;
    this.#host.engine.abandon(e, this.peer);
  }

  /**
   * Exchanges a hello with the peer over the endpoint just created, then a proof of the job token over
   * both hellos (each side's nonce fresh, so a recorded proof is worthless), before any frame. UCX creates
   * an endpoint locally, so without this a rank would count a peer as connected before the peer has even
   * read this rank's address. `myId` is the id this rank gives the peer to send under. Rejects with
   * AuthError when the peer cannot prove the token, TransportError when the hello differs or does not
   * arrive within `timeoutMs` (the channel is failed then).
   */
  async handshake(
    group: number,
    size: number,
    token: string,
    myId: number,
    timeoutMs: number,
  ): Promise<void> {
    if (this.#failed) throw this.#failed;
    const ctx = this.#ctx("ucx.connect");
    checkToken(token, ctx);
    const mine = new Uint8Array(HELLO_BYTES);
    const v = new DataView(mine.buffer);
    for (const [i, x] of [HELLO_MAGIC, group >>> 0, size, this.#rank, this.peer, myId].entries()) {
      v.setUint32(4 * i, x >>> 0, true);
    }
    mine.set(nonce(), HELLO_FIXED);
    const theirs = new Uint8Array(HELLO_BYTES);
    const theirProof = new Uint8Array(PROOF_BYTES);
    const proofIn = this.#receive(theirProof, helloTag(this.peer, 1), false);
    proofIn.catch(() => {});
    const exchange = (async () => {
      const [, length] = await Promise.all([
        this.#post(mine, helloTag(this.#rank, 0), false),
        this.#receive(theirs, helloTag(this.peer, 0), false),
      ]);
      const differs = this.#helloDiffers(theirs, length, group, size);
      if (differs) throw new TransportError(differs, ctx);
      const [, n] = await Promise.all([
        hmac(token, PROOF_LABEL, theirs, mine).then((proof) =>
          this.#post(proof, helloTag(this.#rank, 1), false)
        ),
        proofIn,
      ]);
      const expected = await hmac(token, PROOF_LABEL, mine, theirs);
      if (n !== PROOF_BYTES || !constantTimeEqual(theirProof, expected)) {
        throw new AuthError(
          `rank ${this.peer} cannot prove it holds the job token (another job's rank?)`,
          ctx,
        );
      }
      return new DataView(theirs.buffer).getUint32(20, true);
    })();
    exchange.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() =>
        reject(
          new TransportError(
            `rank ${this.peer} did not open its UCX endpoint to this rank within ${timeoutMs} ms (no hello)`,
            ctx,
          ),
        ), timeoutMs);
    });
    try {
      this.#sendId = await Promise.race([exchange, late]);
      this.#recvId = myId;
    } catch (e) {
      throw this.#failWith(e);
    } finally {
      clearTimeout(timer);
    }
  }

  /** What is wrong with the hello received (`length` bytes), or null. */
  #helloDiffers(theirs: Uint8Array, length: number, group: number, size: number): string | null {
    const t = new DataView(theirs.buffer);
    const [magic, theirGroup, theirSize, from, to] = [0, 1, 2, 3, 4].map((i) => t.getUint32(4 * i, true));
    if (length !== HELLO_BYTES || magic !== HELLO_MAGIC) {
      return `rank ${this.peer} sent ${length} bytes that are not a choir hello`;
    }
    if (theirGroup !== group >>> 0) {
      return `rank ${this.peer} is in group ${theirGroup}, this rank in ${group >>> 0}`;
    }
    if (theirSize !== size) return `rank ${this.peer} has a group of ${theirSize} ranks, this rank ${size}`;
    if (from !== this.peer || to !== this.#rank) {
      return `the hello expected from rank ${this.peer} to rank ${this.#rank} came from rank ${from} to rank ${to}`;
    }
    return null;
  }

  /** Sends one frame; completes in call order. */
  send(header: FrameHeader, payload: Uint8Array): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    const n = payload.byteLength;
    if (header.bytes !== n) {
      return Promise.reject(
        new TransportError(`frame header says ${header.bytes} bytes, payload has ${n}`, this.#ctx("send")),
      );
    }
    const seq = this.#sendSeq++;
    let own: Promise<void>;
    try {
      if (n <= INLINE_BYTES) {
        const msg = new Uint8Array(HEADER_BYTES + n);
        encodeHeader(header, new DataView(msg.buffer));
        msg.set(payload, HEADER_BYTES);
        own = this.#post(msg, frameTag(this.#sendId!, seq, false), false);
      } else {
        const head = new Uint8Array(HEADER_BYTES);
        encodeHeader(header, new DataView(head.buffer));
        own = Promise.all([
          this.#post(head, frameTag(this.#sendId!, seq, false), false),
          this.#post(payload, frameTag(this.#sendId!, seq, true), n >= REGISTER_BYTES),
        ]).then(() => {});
      }
    } catch (e) {
      own = Promise.reject(e);
    }
    // A send that fails because the peer went away: the peer may have said why first (see abort).
    own = own.catch((e) => this.#sendFailed(e));
    // `own` may fail before the earlier sends finish; it is awaited through `done`, not unhandled.
    own.catch(() => {});
    const done = this.#sendTail.then(() => own);
    this.#sendTail = done.catch(() => {});
    return done;
  }

  /** Receives the next frame into `into`; completes in call order. */
  recv(expected: FrameHeader, into: Uint8Array): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    const own = this.#recvFrame(this.#recvSeq++, expected, into);
    own.catch(() => {});
    const done = this.#recvTail.then(() => own);
    this.#recvTail = done.catch(() => {});
    return done;
  }

  async #recvFrame(seq: number, expected: FrameHeader, into: Uint8Array): Promise<void> {
    const stage = this.#stages.pop() ?? new Uint8Array(HEADER_BYTES + INLINE_BYTES);
    const inline = expected.bytes <= INLINE_BYTES;
    const head = this.#receive(stage, frameTag(this.#recvId, seq, false), false);
    // Post the payload's receive at once, so a rendezvous can land in `into` without waiting for us.
    const body = inline
      ? null
      : this.#receive(into, frameTag(this.#recvId, seq, true), into.byteLength >= REGISTER_BYTES);
    body?.catch(() => {});
    let headLength: number;
    try {
      headLength = await head;
    } catch (e) {
      throw this.#failWith(e);
    }
    try {
      const view = new DataView(stage.buffer, 0, HEADER_BYTES);
      const cause = headLength >= HEADER_BYTES ? abortCauseBytes(view) : null;
      if (cause !== null) {
        // The peer gave up and said why (see abort): that is this receive's error.
        const bytes = stage.subarray(HEADER_BYTES, Math.min(headLength, HEADER_BYTES + cause));
        throw decodeCause(bytes, this.#rank, "recv") ??
          new PeerLostError(`rank ${this.peer} gave up`, this.#ctx("recv"));
      }
      const got = stage.byteLength >= HEADER_BYTES && headLength >= HEADER_BYTES ? decodeHeader(view) : null;
      if (got === null) {
        throw new TransportError(
          `rank ${this.peer} sent bytes that are not a choir frame`,
          this.#ctx("recv"),
        );
      }
      checkHeader(expected, got, { rank: this.#rank, peer: this.peer, op: "recv" });
      if (into.byteLength !== got.bytes) {
        throw new TransportError(
          `receive buffer has ${into.byteLength} bytes, frame has ${got.bytes}`,
          this.#ctx("recv"),
        );
      }
      if (inline) {
        if (headLength !== HEADER_BYTES + got.bytes) {
          throw new TransportError(
            `frame from rank ${this.peer} carried ${
              headLength - HEADER_BYTES
            } payload bytes, header says ${got.bytes}`,
            this.#ctx("recv"),
          );
        }
        into.set(stage.subarray(HEADER_BYTES, headLength));
      }
      this.#stages.push(stage);
    } catch (e) {
      throw this.#failWith(e);
    }
    if (body) {
      try {
        const len = await body;
        if (len !== into.byteLength) {
          throw new TransportError(
            `payload of ${len} bytes from rank ${this.peer}, expected ${into.byteLength}`,
            this.#ctx("recv"),
          );
        }
      } catch (e) {
        throw this.#failWith(e);
      }
    }
  }

  /**
   * The error of a send that failed: the peer's own cause when it sent one (see abort: the transport's
   * listener then fails this channel with it within {@link CAUSE_WAIT_MS}), else `e`.
   */
  async #sendFailed(e: unknown): Promise<never> {
    if (!this.#failed || this.#failed === e) await new Promise((r) => setTimeout(r, CAUSE_WAIT_MS));
    throw this.#failWith(this.#failed ?? this.#lost ?? e);
  }

  /**
   * Fails the channel with `e` (its endpoint failed: the peer went away) after {@link CAUSE_WAIT_MS},
   * unless the peer's own cause (see abort) has failed it first.
   */
  failUnlessTold(e: ChoirError): void {
    if (this.#failed) return;
    this.#lost = e;
    setTimeout(() => this.fail(e), CAUSE_WAIT_MS);
  }

  /** Starts a send; resolves when UCX is done with `buf`. */
  #post(buf: Uint8Array, tag: bigint, register: boolean): Promise<void> {
    const { worker, engine, cache } = this.#host;
    const memh = register ? cache.handle(buf) : null;
    const r = worker.send(this.peer, buf, tag, memh);
    if (r.kind !== "request") {
      if (memh) cache.release(buf);
      if (r.kind === "done") return Promise.resolve();
      return Promise.reject(
        this.#failWith(ucxError(worker.lib, "ucp_tag_send_nbx", r.status, this.#ctx("send"))),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const p: Pending = {
        request: r.request,
        info: null,
        keep: buf,
        peer: this.peer,
        complete: (status) => {
          if (memh) cache.release(buf);
          if (status === UCS_OK) resolve();
          else reject(this.#statusError("send", status));
        },
        abandon: reject,
      };
      engine.track(p);
    });
  }

  /** Posts a receive; resolves with the received length when UCX is done with `buf`. */
  #receive(buf: Uint8Array, tag: bigint, register: boolean): Promise<number> {
    const { worker, engine, cache } = this.#host;
    const memh = register ? cache.handle(buf) : null;
    const r = worker.recv(buf, tag, memh);
    if (r.kind !== "request") {
      if (memh) cache.release(buf);
      // NO_IMM_CMPL makes "done" impossible; an error status is a refusal to post.
      const st = r.kind === "error" ? r.status : -1;
      return Promise.reject(ucxError(worker.lib, "ucp_tag_recv_nbx", st, this.#ctx("recv")));
    }
    return new Promise<number>((resolve, reject) => {
      engine.track({
        request: r.request,
        info: new Uint8Array(worker.layout.tagRecvInfo.size),
        keep: buf,
        peer: this.peer,
        complete: (status, length) => {
          if (memh) cache.release(buf);
          if (status === UCS_OK) resolve(length);
          else reject(this.#statusError("recv", status));
        },
        abandon: reject,
      });
    });
  }

  /** The error for a request that ended with `status`: the channel's failure when it has one. */
  #statusError(op: string, status: number): ChoirError {
    return this.#failed ?? this.#lost ?? ucxError(this.#host.worker.lib, `UCX ${op}`, status, this.#ctx(op));
  }

  /** Marks the channel failed with `e` (or its earlier failure) and returns that error. */
  #failWith(e: unknown): ChoirError {
    const err = this.#failed ??
      (e instanceof ChoirError ? e : new TransportError(String(e), { ...this.#ctx("recv"), cause: e }));
    this.fail(err);
    return err;
  }

  #ctx(op: string) {
    return { rank: this.#rank, peer: this.peer, op };
  }
}

/**
 * Listens, for the worker's whole life, for the abort frame any peer sends before it gives up (see
 * {@link UcxChannel.abort}), and hands its cause to `onCause`; an abort under an id no peer was given
 * (a stranger's) is dropped. Checked on every turn of the engine, which it does not keep busy.
 */
export function listenForCauses(
  host: UcxChannelHost,
  rank: number,
  onCause: (e: ChoirError) => void,
  isPeerId: (id: number) => boolean,
): void {
  const { worker, engine } = host;
  const buf = new Uint8Array(HEADER_BYTES + MAX_CAUSE_BYTES);
  const r = worker.recv(buf, ABORT_MASK, null, ABORT_MASK);
  if (r.kind !== "request") return;
  const info = new Uint8Array(worker.layout.tagRecvInfo.size);
  engine.watch({
    request: r.request,
    info,
    keep: buf,
    peer: -1,
    complete: (status, length) => {
      if (status !== UCS_OK) return;
      const tag = new DataView(info.buffer).getBigUint64(worker.layout.tagRecvInfo.senderTag, true);
      if (!isPeerId(senderId(tag)) || length < HEADER_BYTES) {
        listenForCauses(host, rank, onCause, isPeerId);
        return;
      }
      const n = abortCauseBytes(new DataView(buf.buffer, 0, HEADER_BYTES));
      const cause = n === null
        ? null
        : decodeCause(buf.subarray(HEADER_BYTES, Math.min(length, HEADER_BYTES + n)), rank, "recv");
      if (cause) onCause(cause);
    },
    abandon: () => {},
  });
}
