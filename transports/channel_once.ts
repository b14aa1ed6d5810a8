/**
 * @module
 * The channel bookkeeping every transport shares: refuse a closed transport or a bad peer rank, connect
 * to a peer once (callers share the attempt), and forget an attempt that failed so that a later call
 * tries again. How to connect is the transport's.
 */

import { TransportError } from "../errors.ts";

/** What {@link channelOnce} needs to know about the transport asking. */
export interface ChannelOwner<C> {
  /** This rank. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  /** Why the transport is closed, or null while it is open. */
  readonly closed: Error | null;
  /** Connections made or under way, by peer rank. */
  readonly channels: Map<number, Promise<C>>;
}

/** The channel to `peer`: the one made or under way, else a new `connect(peer)`. */
export function channelOnce<C>(
  o: ChannelOwner<C>,
  peer: number,
  connect: (peer: number) => Promise<C>,
): Promise<C> {
  if (o.closed) return Promise.reject(o.closed);
  if (peer === o.rank || peer < 0 || peer >= o.size || !Number.isInteger(peer)) {
    return Promise.reject(
      new TransportError(`no channel to rank ${peer} in a group of ${o.size}`, {
        rank: o.rank,
        op: "channel",
      }),
    );
  }
  let c = o.channels.get(peer);
  if (!c) {
    c = connect(peer);
    o.channels.set(peer, c);
    c.catch(() => o.channels.delete(peer));
  }
  return c;
}
