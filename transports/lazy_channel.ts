/**
 * @module
 * A Channel that opens its link on first use: the first send or receive asks the transport for the
 * peer's channel, and later calls go straight to it. Calls made while the link opens keep their order.
 * Lazy groups build their channels of these, so a group connects only to the peers its algorithms use.
 */

import type { FrameHeader } from "./frame.ts";
import type { Channel, ChannelOptions } from "./transport.ts";

/** How a collective's first send or receive opens the link: the peer reaches it too. */
const MUTUAL: ChannelOptions = Object.freeze({ mutual: true });

/** A {@link Channel} to `peer` opened by `open` on first use (again after a failed open). */
export class LazyChannel implements Channel {
  /** The peer's rank. */
  readonly peer: number;
  readonly #open: (opts: ChannelOptions) => Promise<Channel>;
  #ch: Channel | null = null;
  #opening: Promise<Channel> | null = null;

  /**
   * A channel to `peer` that calls `open` (e.g. `(o) => transport.channel(peer, o)`) when first used:
   * `{ mutual: true }` from a send or receive (a collective's peer uses the link in the same call).
   */
  constructor(peer: number, open: (opts: ChannelOptions) => Promise<Channel>) {
    this.peer = peer;
    this.#open = open;
  }

  /** Whether the link is open. */
  get opened(): boolean {
    return this.#ch !== null;
  }

  /**
   * Opens the link now if it is not (what a send or receive would do first, with `opts` mutual). A
   * point-to-point call opens it with `{}`: this rank may dial, whether or not the peer asks yet.
   */
  ensure(opts: ChannelOptions = MUTUAL): Promise<Channel> {
    if (this.#ch) return Promise.resolve(this.#ch);
    if (!this.#opening) {
      const p = this.#open(opts);
      this.#opening = p;
      p.then((ch) => this.#ch = ch, () => this.#opening = null);
    }
    return this.#opening;
  }

  /** Sends one frame, opening the link first if needed. */
  send(header: FrameHeader, payload: Uint8Array): Promise<void> {
    if (this.#ch) return this.#ch.send(header, payload);
    return this.ensure().then((ch) => ch.send(header, payload));
  }

  /** Receives the next frame, opening the link first if needed. */
  recv(expected: FrameHeader, into: Uint8Array): Promise<void> {
    if (this.#ch) return this.#ch.recv(expected, into);
    return this.ensure().then((ch) => ch.recv(expected, into));
  }
}
