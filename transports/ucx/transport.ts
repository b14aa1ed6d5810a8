/**
 * @module
 * The UCX transport: one UCP worker per group, its address published through the store, an endpoint per
 * peer, framed channels over tag matching, and peer-death detection (UCX's endpoint errors plus a
 * process watch for same-host peers). Which transport a group uses is select.ts's choice.
 */

import { ChoirError, PeerLostError, TransportError } from "../../errors.ts";
import { hostId } from "../host_id.ts";
import { libc as shmLibc } from "../shm/libc.ts";
import { ProcessWatch } from "../shm/liveness.ts";
import type { Store } from "../store/store.ts";
import type { Channel, Transport } from "../transport.ts";
import { listenForCauses, UcxChannel } from "./channel.ts";
import { UcxEngine } from "./engine.ts";
import { RegistrationCache } from "./memreg.ts";
import { statusString } from "./status.ts";
import { UcxWorker } from "./worker.ts";
import { endpointInfo, lanesOf, tagProtocolsOf } from "./devices.ts";
import { channelOnce } from "../channel_once.ts";
import { checkToken } from "../token.ts";

/** What UCX chose for the endpoint to one peer. */
export interface UcxPeerWires {
  /** The peer rank. */
  peer: number;
  /** Transport/device pairs of the endpoint's lanes (e.g. `sysv/memory`). */
  lanes: string[];
  /** The tag protocols by message size (eager/rendezvous thresholds), as UCX prints them. */
  tagProtocols: string | null;
}

const live = new Set<UcxTransport>();

/** The UCX transports open in this process (for reports, such as the benchmark's). */
export function openUcxTransports(): UcxTransport[] {
  return [...live];
}

/** Options of {@link UcxTransport.create}. */
export interface UcxTransportOptions {
  /** This rank. */
  rank: number;
  /** Number of ranks. */
  size: number;
  /** Store where ranks publish their worker addresses (prefix it per group). */
  store: Store;
  /**
   * The job token, proven (never sent) by both ranks in the hello that opens each channel, before any
   * frame is accepted. An empty one is an InvalidArgumentError.
   */
  token: string;
  /** How long to wait for a peer's address and for its hello and proof, ms. */
  timeoutMs: number;
  /** Group id, carried in the hello every endpoint starts with (default 0, the world). */
  group?: number;
  /** CHOIR_HOST_ID override: peers with the same id are watched by pid. */
  hostIdOverride?: string;
  /** Microseconds of plain polling, once nothing moves, before yielding the CPU (default 10). */
  spinUs?: number;
  /** Further microseconds of polling after `sched_yield()` before sleeping on the event fd (default 100). */
  yieldUs?: number;
  /** Registrations the cache keeps (default 16). */
  cacheEntries?: number;
}

const SLEEP_MS = 50;
const CHECK_MS = 100;
/** How often a worker with nothing pending is progressed (for its peers' connects and closes), ms. */
const IDLE_MS = 10;

/**
 * A {@link Transport} over UCX's UCP tag API (InfiniBand/RoCE verbs where present, else TCP, shared
 * memory or CMA, as UCX_TLS allows). Needs `--allow-ffi` and libucp (Debian package libucx0).
 */
export class UcxTransport implements Transport {
  /** Always `"ucx"`. */
  readonly name = "ucx";
  /** This rank. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  readonly #worker: UcxWorker;
  readonly #engine: UcxEngine;
  readonly #cache: RegistrationCache;
  readonly #opts: UcxTransportOptions;
  readonly #channels = new Map<number, Promise<UcxChannel>>();
  readonly #open = new Map<number, UcxChannel>();
  readonly #watches = new Map<number, ProcessWatch>();
  readonly #dead = new Set<number>();
  /** The id each peer was given to send to this rank under (tags.ts), and the peer of each id. */
  readonly #idOf = new Map<number, number>();
  readonly #peerOf = new Map<number, number>();
  readonly #myHost: string;
  #closed: Error | null = null;

  private constructor(opts: UcxTransportOptions, worker: UcxWorker, myHost: string) {
    this.#opts = opts;
    this.rank = opts.rank;
    this.size = opts.size;
    this.#worker = worker;
    this.#myHost = myHost;
    const lib = shmLibc();
    this.#engine = new UcxEngine(worker, () => lib.fn.sched_yield(), {
      spinUs: opts.spinUs ?? 10,
      yieldUs: opts.yieldUs ?? 100,
      sleepMs: SLEEP_MS,
      checkMs: CHECK_MS,
      idleMs: IDLE_MS,
    });
    this.#cache = new RegistrationCache(worker, opts.cacheEntries ?? 16);
    worker.onPeerError = (peer, status) =>
      this.#peerLost(
        peer,
        `UCX reported the endpoint to rank ${peer} failed: ${statusString(worker.lib, status)}`,
        true,
      );
    this.#engine.onCheck = () => this.#checkPeers();
    // A peer that gives up tells this rank why (UcxChannel.abort): the group breaks with that cause,
    // even while no operation waits on that peer.
    listenForCauses(
      { worker, engine: this.#engine, cache: this.#cache },
      opts.rank,
      (cause) => void this.close(cause),
      (id) => this.#peerOf.has(id),
    );
    live.add(this);
  }

  /** How the registration cache has been used: buffers registered, lookups served, entries held. */
  registrations(): { registered: number; hits: number; held: number } {
    return { registered: this.#cache.registrations, hits: this.#cache.hits, held: this.#cache.size };
  }

  /** The lanes and protocols UCX chose for each connected peer. */
  wires(): UcxPeerWires[] {
    const out: UcxPeerWires[] = [];
    for (const peer of [...this.#open.keys()].sort((a, b) => a - b)) {
      const ep = this.#worker.endpoint(peer);
      if (!ep) continue;
      const info = endpointInfo(this.#worker.lib, ep);
      out.push({ peer, lanes: lanesOf(info), tagProtocols: tagProtocolsOf(info) });
    }
    return out;
  }

  /**
   * Creates the worker and publishes its address and this process's host and pid. Throws
   * LibraryUnavailableError without libucp (naming the package) or for an unverified UCX version.
   */
  static async create(opts: UcxTransportOptions): Promise<UcxTransport> {
    checkToken(opts.token, { rank: opts.rank, op: "UcxTransport.create" });
    const worker = UcxWorker.open(opts.rank, opts.size - 1);
    const host = hostId(opts.hostIdOverride);
    const t = new UcxTransport(opts, worker, host);
    try {
      await opts.store.set(`addr/${opts.rank}`, worker.address());
      await opts.store.set(`who/${opts.rank}`, `${Deno.pid}\n${host}`);
    } catch (e) {
      // close() also stops the engine, so that its idle timer never touches the destroyed worker.
      await t.close(e instanceof Error ? e : undefined);
      throw e;
    }
    return t;
  }

  /** The channel to `peer`, creating its endpoint from the peer's published address on first use. */
  channel(peer: number): Promise<Channel> {
    const owner = { rank: this.rank, size: this.size, closed: this.#closed, channels: this.#channels };
    return channelOnce(owner, peer, (p) => this.#connect(p));
  }

  async #connect(peer: number): Promise<UcxChannel> {
    const store = this.#opts.store;
    const [address, who] = await Promise.all([store.get(`addr/${peer}`), store.get(`who/${peer}`)]);
    if (this.#closed) throw this.#closed;
    const [pid, host] = new TextDecoder().decode(who).split("\n");
    const local = host === this.#myHost && Number(pid) > 0;
    // A same-host peer is watched by pid (UCX 1.13's shared-memory transports cannot report failures,
    // and asking for reporting would exclude them); a peer elsewhere is watched by UCX itself.
    // (A retry after a failed hello reuses the endpoint and the watch.)
    if (local && !this.#watches.has(peer)) this.#watches.set(peer, new ProcessWatch(shmLibc(), Number(pid)));
    if (!this.#worker.connected(peer)) this.#worker.connect(peer, address, !local);
    const parts = { worker: this.#worker, engine: this.#engine, cache: this.#cache };
    const ch = new UcxChannel(parts, this.rank, peer);
    this.#open.set(peer, ch);
    if (this.#dead.has(peer)) ch.fail(new PeerLostError(`rank ${peer} is gone`, { rank: this.rank, peer }));
    // Issue 19: ucp_ep_create is local, and so the channel used to be ready as soon as this rank had
    // made its endpoint. A group whose ranks then had nothing to say to one another (a newGroup used
    // by some members only, or destroyed at once) let a fast rank destroy its worker, and with it the
    // TCP listener its address names, before a slower peer had read that address: the peer's
    // ucp_ep_create was refused ("Destination is unreachable"); the fast rank's close meanwhile waited
    // out its 2 s bound flushing to a peer that never connected, with the JS thread (and, on rank 0,
    // the job's store) blocked, which made the peers slower still; and the failure spread to the
    // parent group as "Endpoint timeout". The hello makes opening a channel two-sided, as the TCP
    // transport's handshake is: a channel is ready only once the peer's endpoint to this rank exists.
    // It also proves the token both ways, and gives each rank the secret id it sends to the other under.
    const myId = this.#idFor(peer);
    await ch.handshake(this.#opts.group ?? 0, this.size, this.#opts.token, myId, this.#opts.timeoutMs);
    return ch;
  }

  /** The id `peer` sends to this rank under: random, nonzero, and no other peer's. */
  #idFor(peer: number): number {
    let id = this.#idOf.get(peer);
    while (id === undefined) {
      const pick = crypto.getRandomValues(new Uint32Array(1))[0];
      if (pick !== 0 && !this.#peerOf.has(pick)) id = pick;
    }
    this.#idOf.set(peer, id);
    this.#peerOf.set(id, peer);
    return id;
  }

  /** Fails the channel to `peer` (and its pending receives) with PeerLostError. */
  #peerLost(peer: number, why: string, mayHaveSaid = false): void {
    if (this.#dead.has(peer) || this.#closed) return;
    this.#dead.add(peer);
    const err = new PeerLostError(why, { rank: this.rank, peer, op: "ucx" });
    // A peer whose endpoint failed may have closed on purpose, after telling this rank why.
    if (mayHaveSaid) this.#open.get(peer)?.failUnlessTold(err);
    else this.#open.get(peer)?.fail(err);
  }

  /**
   * Same-host peers with requests pending: is the process still there? Runs in the engine's loop,
   * outside `ucp_worker_progress`, so it may progress the worker itself.
   */
  #checkPeers(): void {
    for (const [peer, w] of this.#watches) {
      if (!this.#dead.has(peer) && !w.alive()) {
        // What it sent before exiting may still wait in a socket or fifo: take it in first, so that the
        // receives it completes are delivered rather than failed (the engine's abandon keeps them).
        for (let i = 0; i < 64 && this.#worker.progress() !== 0; i++);
        this.#peerLost(peer, `rank ${peer} (pid ${w.pid}) exited`);
      }
    }
  }

  /** Closes every channel and the worker; pending operations reject with `reason` or TransportError. */
  async close(reason?: Error): Promise<void> {
    if (this.#closed) return;
    live.delete(this);
    const err = reason instanceof ChoirError
      ? reason
      : new TransportError(reason ? reason.message : "transport closed", { rank: this.rank, op: "close" });
    this.#closed = err;
    // A failure is told to every peer first, in-band (UcxChannel.abort); a plain close only closes.
    if (reason instanceof ChoirError) {
      await Promise.all([...this.#open.values()].map((ch) => ch.abort(err, 250)));
    }
    for (const ch of this.#open.values()) ch.fail(err);
    await this.#engine.stop();
    // Buffers of requests UCX never finished stay referenced until the worker (and its use of them) is gone.
    const kept = this.#engine.drain(err, 1000);
    await this.#worker.destroy(this.#dead, 2000, () => this.#cache.clear());
    kept.length = 0;
    for (const w of this.#watches.values()) w.close();
    this.#watches.clear();
  }
}
