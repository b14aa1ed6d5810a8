/**
 * @module
 * A transport that routes each peer to the best of several transports: shared memory for ranks on
 * this host, TCP for the others. Each inner transport numbers its own ranks; this one maps them.
 */

import { TransportError } from "../errors.ts";
import type { Channel, ChannelOptions, Transport } from "./transport.ts";

/** One inner transport and the global ranks it connects (its rank i is global rank `ranks[i]`). */
export interface Route {
  /** The inner transport. */
  transport: Transport;
  /** Global rank of each of the inner transport's ranks. */
  ranks: readonly number[];
}

/** Routes `channel(peer)` to the first route that contains both this rank and `peer`. */
export class RoutedTransport implements Transport {
  /** Names of the inner transports joined by `+` (e.g. `shm+tcp`). */
  readonly name: string;
  /** This rank (global). */
  readonly rank: number;
  /** Number of ranks (global). */
  readonly size: number;
  readonly #routes: readonly Route[];

  /** Combines `routes`, tried in order (put the fastest first). */
  constructor(rank: number, size: number, routes: readonly Route[]) {
    this.rank = rank;
    this.size = size;
    this.#routes = routes;
    this.name = routes.map((r) => r.transport.name).join("+");
  }

  /** The transport that carries traffic between this rank and `peer`. */
  routeOf(peer: number): string | undefined {
    return this.#routes.find((r) => r.ranks.includes(this.rank) && r.ranks.includes(peer))?.transport.name;
  }

  /** The channel to global rank `peer`, through the first route that reaches it. */
  async channel(peer: number, opts?: ChannelOptions): Promise<Channel> {
    for (const r of this.#routes) {
      const local = r.ranks.indexOf(peer);
      if (local < 0 || !r.ranks.includes(this.rank)) continue;
      const inner = await r.transport.channel(local, opts);
      return { peer, send: (h, p) => inner.send(h, p), recv: (h, into) => inner.recv(h, into) };
    }
    throw new TransportError(`no route to rank ${peer}`, { rank: this.rank, op: "channel" });
  }

  /** Connections of the inner transports that count them (TCP's sockets; shared memory has none). */
  connections(): number {
    return this.#routes.reduce((n, r) => n + (r.transport.connections?.() ?? 0), 0);
  }

  /** Closes every inner transport. */
  async close(reason?: Error): Promise<void> {
    await Promise.all(this.#routes.map((r) => r.transport.close(reason)));
  }
}
