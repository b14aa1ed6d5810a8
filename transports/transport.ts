/**
 * @module
 * The Transport and Channel interfaces every transport implements (tcp now; shm, ucx, inproc later).
 * A transport moves framed byte ranges between two ranks; it knows nothing of reductions.
 */

import type { FrameHeader } from "./frame.ts";
import type { ArenaHost } from "./arena_host.ts";
import type { SymmetricAllocation } from "./shm/symmetric.ts";

/**
 * A bidirectional, ordered link to one peer. Sends are delivered in the order they were issued;
 * receives complete in the order they were issued. A send and a receive may run at the same time.
 */
export interface Channel {
  /** The peer's rank. */
  readonly peer: number;
  /**
   * Sends one frame: `header` (whose `bytes` must equal `payload.byteLength`) then `payload`.
   * Resolves when the payload buffer may be reused.
   */
  send(header: FrameHeader, payload: Uint8Array): Promise<void>;
  /**
   * Receives the next frame into `into`, which must be exactly the payload size. Throws
   * `CollectiveMismatchError` if the frame's header differs from `expected` (then the channel is
   * unusable), `PeerLostError` if the peer went away.
   */
  recv(expected: FrameHeader, into: Uint8Array): Promise<void>;
  /**
   * Optional: `send(header, payload)` and `recv(header, into)` at once, where a transport can finish
   * both within this call; then it returns `undefined` instead of a promise.
   */
  exchange?(header: FrameHeader, payload: Uint8Array, into: Uint8Array): Promise<void> | undefined;
}

/** How a rank asks for a channel. */
export interface ChannelOptions {
  /**
   * The peer asks for this link at about the same time (both ranks of a collective reach it), so one
   * dial is enough and the transport may wait for the peer's instead of crossing it with its own. Leave
   * it unset where the peer may not ask soon (a point-to-point send it has not posted a receive for).
   */
  mutual?: boolean;
}

/** A set of channels from one rank to the others of its group. */
export interface Transport {
  /** The transport's name (`tcp`, `shm`, ...). */
  readonly name: string;
  /** This rank. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  /** The channel to `peer`, connecting on first use. Rejects with a typed error on failure. */
  channel(peer: number, opts?: ChannelOptions): Promise<Channel>;
  /**
   * The shared-memory arena this transport offers for same-host collectives, if any (shm only).
   * Collectives that find it run on shared memory directly instead of through channels.
   */
  arena?(): ArenaHost | null;
  /**
   * Symmetric memory for `pg.alloc` when the transport provides it itself (Worker ranks: one shared
   * memory for the group); absent, the group maps shm segments. A collective call, in order.
   */
  symmetric?(index: number, bytes: number): Promise<SymmetricAllocation>;
  /** Connections this rank holds now, where the transport has them (TCP: one socket per linked peer). */
  connections?(): number;
  /** Closes every channel; pending sends and receives reject with `PeerLostError`/`TransportError`. */
  close(reason?: Error): Promise<void>;
}
