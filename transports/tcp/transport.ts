/**
 * @module
 * The TCP transport: a listener per rank, addresses exchanged through the store, one connection per
 * pair of ranks, each opened by the mutual proof of the job token (handshake.ts). Eager groups (every
 * pair connected up front) let the higher rank dial; lazy ones let whichever rank needs the link first
 * dial, and when both dial at once the higher rank's connection is kept (the lower one is told CROSSED
 * and takes the other). The listener is bounded: a connection that does not finish its handshake within
 * a second is dropped, at most max(64, size) wait at once, and an accept error (EMFILE) pauses the
 * accept loop, never ends it.
 */

import { AuthError, ChoirError, PeerLostError, TransportError } from "../../errors.ts";
import { isPermissionDenied, netFlag, netPermissionError } from "../permission.ts";
import type { Store } from "../store/store.ts";
import { acceptHello, sendHello } from "./handshake.ts";
import { TcpChannel } from "./channel.ts";
import type { Channel, ChannelOptions, Transport } from "../transport.ts";
import { channelOnce } from "../channel_once.ts";
import { checkToken } from "../token.ts";
import { acceptLoop, isFdExhaustion } from "../accept_loop.ts";
import { HANDSHAKE_IDLE_MS, HANDSHAKE_MAX_MS, MIN_PENDING_HANDSHAKES } from "../limits.ts";

/**
 * Microseconds a read or write that would block polls its socket (with every other pending one of
 * this process) before it sleeps on it. An 8-byte exchange between two polling ranks took 8-10 us on
 * our 2-core machine (2026-12-07), a wake-up from a sleeping read 30-100 us.
 */
const SPIN_US = 100;
/**
 * The same for ranks that share cores (a group of more ranks than this host has CPUs, up to
 * {@link TUNE_MAX_RANKS}; the group's size stands in for its ranks on this host, as for {@link SPIN_US}),
 * with the core given away (`sched_yield`) between polls that found nothing, so that the rank it waits
 * for can run (where nothing else wants the core, the yield returns at once and this is a plain spin). 4 ranks on 2 cores, float32 allreduce (2026-12-08, 3 rounds): 8 B 200-205 us against 247-265
 * us sleeping at once, 64 KiB 390-425 against 633-650 us, 1 MiB 1.96-2.21 against 2.33-2.35 ms; 100 us
 * gave less, 1,000 about the same.
 */
const CROWDED_SPIN_US = 300;
/**
 * Groups up to this size use the libc fast path (where every rank has a core). Finding a connection's
 * socket looks at every open descriptor, so a process holding thousands of links (simulated ranks)
 * would pay for it per link.
 */
const FAST_PATH_MAX_RANKS = 256;
/**
 * Groups up to this size find every connection's socket, fast path or not, to tune it (Reno on the same
 * host: a 4-rank 1 MiB allreduce over loopback on 2 cores, docs/benchmarks.md). Small, for the same
 * reason as {@link FAST_PATH_MAX_RANKS}: the scale harness's processes hold thousands of sockets.
 */
const TUNE_MAX_RANKS = 16;

/** Options of {@link TcpTransport.create}. */
export interface TcpTransportOptions {
  /** This rank. */
  rank: number;
  /** Number of ranks. */
  size: number;
  /** Store used to publish and look up listener addresses (prefix it per group). */
  store: Store;
  /** The job token every connection must prove (never sent); an empty one is an InvalidArgumentError. */
  token: string;
  /** Group id carried in the handshake. */
  group?: number;
  /** How long to wait for a peer's address or connection, in milliseconds. */
  timeoutMs: number;
  /** Interface address to listen on (default 127.0.0.1). */
  hostname?: string;
  /** Address peers should connect to, when it differs from `hostname` (e.g. listening on 0.0.0.0). */
  advertise?: string;
  /** Follow every payload with its CRC32C and check it on receipt (`CHOIR_CHECKSUM=1`). */
  checksum?: boolean;
  /**
   * Either rank of a pair may dial, on first use (lazy groups: a rank sending to a peer that has not
   * asked for the link yet must not wait for it). Default false: the higher rank dials and the lower
   * waits, which costs one connection attempt per pair when every pair connects up front.
   */
  eitherDials?: boolean;
}

/** Pauses between dials refused before the handshake's verdict (the peer dropped the connection). */
const REDIAL_MIN_MS = 10;
const REDIAL_MAX_MS = 500;
/**
 * How long the lower rank of a mutual link waits for the peer's dial before it dials as well: this plus
 * {@link MUTUAL_GRACE_PER_RANK_MS} for each rank of the group, since the ranks of a larger job reach their
 * first collective further apart (4,096 simulated ranks on 2 cores: up to about 10 s; with a 3 s grace for
 * every size, that start-up took 14.0-17.9 s against 13.6-14.5 s with 30 s, 2026-12-07).
 */
const MUTUAL_GRACE_MS = 3_000;
/** See {@link MUTUAL_GRACE_MS}. */
const MUTUAL_GRACE_PER_RANK_MS = 2.5;

/** `p`'s value if it fulfils within `ms`, else undefined (a rejection within `ms` is thrown). */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

interface Waiter {
  resolve: (c: TcpChannel) => void;
  reject: (e: Error) => void;
}

/** A wait for a peer's dial, which the waiting rank may give up without an error. */
interface DialWait {
  promise: Promise<TcpChannel>;
  cancel(): void;
}

/** A {@link Transport} over TCP sockets. Create with {@link TcpTransport.create}. */
export class TcpTransport implements Transport {
  /** Always `"tcp"`. */
  readonly name = "tcp";
  /** This rank. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  readonly #opts: TcpTransportOptions;
  readonly #listener: Deno.TcpListener;
  readonly #channels = new Map<number, Promise<TcpChannel>>();
  /** Links peers opened to this rank, by peer; pending while the handshake's answer is on its way. */
  readonly #accepted = new Map<number, Promise<TcpChannel>>();
  /** Peers this rank is dialing now, and peers its own dial has linked. */
  readonly #dialing = new Set<number>();
  readonly #linked = new Set<number>();
  /** Peers' published addresses, looked up once; lookups waiting for the next batch. */
  readonly #addresses = new Map<number, Promise<string>>();
  readonly #lookups = new Map<number, PromiseWithResolvers<string>>();
  #prefetched = false;
  readonly #waiters = new Map<number, Waiter>();
  readonly #open = new Set<TcpChannel>();
  /**
   * How long a blocked read or write polls before it sleeps, us: {@link SPIN_US} where every rank can
   * have a core of its own; {@link CROWDED_SPIN_US}, yielding the core between polls, where ranks share
   * cores in a group of up to {@link TUNE_MAX_RANKS}; null (Deno's calls only) in larger groups. Polling
   * without yielding there made things worse (4 ranks on 2 cores, 8 B allreduce 473-530 us against
   * 342-447 us, 2026-12-07): the rank polling kept the core from the peer it waited for.
   */
  readonly #spinUs: number | null;
  /** Whether polls that find nothing give the core away ({@link CROWDED_SPIN_US}). */
  readonly #yields: boolean;
  /** Whether channels look up their socket (for its tuning) even without the polling fast path. */
  readonly #findSockets: boolean;
  readonly #pendingConns = new Set<Deno.Conn>();
  /** Accepted connections whose handshake is running, oldest first. */
  readonly #handshaking = new Set<Deno.TcpConn>();
  readonly #maxHandshakes: number;
  readonly #stopAccepting = new AbortController();
  #closed: Error | null = null;
  readonly #acceptLoop: Promise<void>;

  private constructor(opts: TcpTransportOptions, listener: Deno.TcpListener) {
    this.#opts = opts;
    this.rank = opts.rank;
    this.size = opts.size;
    const cores = navigator.hardwareConcurrency || 1;
    this.#yields = opts.size > Math.min(cores, FAST_PATH_MAX_RANKS) && opts.size <= TUNE_MAX_RANKS;
    this.#spinUs = this.#yields
      ? CROWDED_SPIN_US
      : opts.size <= Math.min(cores, FAST_PATH_MAX_RANKS)
      ? SPIN_US
      : null;
    this.#findSockets = this.#spinUs !== null || opts.size <= TUNE_MAX_RANKS;
    this.#listener = listener;
    this.#maxHandshakes = Math.max(MIN_PENDING_HANDSHAKES, opts.size);
    this.#acceptLoop = acceptLoop(listener, {
      onConn: (conn) => this.#admit(conn),
      // Out of descriptors: a connection still silent is the one to give up.
      onPressure: (err) => isFdExhaustion(err) && this.#dropOldestHandshake(),
      closed: () => this.#closed !== null,
    }, this.#stopAccepting.signal);
  }

  /** Starts listening and publishes this rank's address in the store. */
  static async create(opts: TcpTransportOptions): Promise<TcpTransport> {
    checkToken(opts.token, { rank: opts.rank, op: "TcpTransport.create" });
    const hostname = opts.hostname ?? "127.0.0.1";
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname, port: 0 });
    } catch (e) {
      if (isPermissionDenied(e)) {
        throw netPermissionError(`cannot listen on ${hostname}`, netFlag(hostname), e, {
          rank: opts.rank,
          op: "listen",
        });
      }
      throw new TransportError(`cannot listen on ${hostname}: ${(e as Error).message}`, {
        rank: opts.rank,
        op: "listen",
        cause: e,
      });
    }
    const t = new TcpTransport(opts, listener);
    const addr = listener.addr as Deno.NetAddr;
    const host = opts.advertise ?? (hostname === "0.0.0.0" ? "127.0.0.1" : hostname);
    await opts.store.set(`addr/${opts.rank}`, `${host}:${addr.port}`);
    return t;
  }

  /** The port this rank listens on. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Connections this rank holds now (open links to peers, whoever dialed). */
  connections(): number {
    return this.#open.size;
  }

  /**
   * The channel to `peer`; the first call connects: the link the peer opened already, else a dial
   * (the higher rank's, or with `eitherDials` this rank's unless `opts.mutual`), else a wait for the
   * peer's dial.
   */
  channel(peer: number, opts?: ChannelOptions): Promise<Channel> {
    const owner = { rank: this.rank, size: this.size, closed: this.#closed, channels: this.#channels };
    return channelOnce(owner, peer, (p) => this.#link(p, opts?.mutual === true));
  }

  /** Links to `peer`; `mutual`: the peer asks for the link too, so only the higher rank dials. */
  async #link(peer: number, mutual: boolean): Promise<TcpChannel> {
    const accepted = this.#accepted.get(peer);
    if (accepted) return await accepted;
    if (peer < this.rank) {
      const dialed = await this.#dial(peer);
      return dialed === "crossed" ? await this.#crossed(peer).promise : dialed;
    }
    const incoming = this.#crossed(peer);
    if (!this.#opts.eitherDials) return await incoming.promise;
    if (mutual) {
      // A pair that both dial at once pays two handshakes for one link, so wait for the peer's dial a
      // while first. Then dial too: its dials may not get through (its connections to this rank's
      // listener dropped under a flood), or it died before it could (then our dial's refusal names it).
      const grace = MUTUAL_GRACE_MS + this.size * MUTUAL_GRACE_PER_RANK_MS;
      const dialed = await settledWithin(incoming.promise, grace);
      if (dialed) return dialed;
    }
    // This rank is the lower one: dial, but if the peer dials too, its connection wins.
    const dialing = this.#dial(peer);
    const first = await Promise.race([
      dialing.then((dialed) => ({ dialed }), (failed: unknown) => ({ failed })),
      incoming.promise.then((accepted) => ({ accepted })),
    ]);
    if ("accepted" in first) {
      // Our dial is answered CROSSED; should it be taken anyway, it is one link too many.
      dialing.then((d) => d === "crossed" || d.close(), () => {});
      return first.accepted;
    }
    if ("failed" in first) {
      incoming.cancel();
      throw first.failed;
    }
    if (first.dialed !== "crossed") {
      incoming.cancel();
      return first.dialed;
    }
    return await incoming.promise;
  }

  /** The link the peer opens to this rank: accepted already, or awaited (a DialWait). */
  #crossed(peer: number): DialWait {
    const accepted = this.#accepted.get(peer);
    return accepted ? { promise: accepted, cancel: () => {} } : this.#awaitDial(peer);
  }

  /**
   * The address `peer` published. Lookups asked for in the same turn of the event loop go to the store
   * as one multiGet: an eager group's N-1 dials cost one request (and one connection), not N-1.
   */
  #addressOf(peer: number): Promise<string> {
    const cached = this.#addresses.get(peer);
    if (cached) return cached;
    const wanted = Promise.withResolvers<string>();
    this.#addresses.set(peer, wanted.promise);
    wanted.promise.catch(() => this.#addresses.delete(peer)); // a later dial asks again
    if (this.#lookups.size === 0) queueMicrotask(() => this.#lookUp());
    this.#lookups.set(peer, wanted);
    return wanted.promise;
  }

  async #lookUp(): Promise<void> {
    // The first lookup also fetches the peers an algorithm is likely to reach next (ring and tree
    // neighbours, recursive-doubling partners): O(log N) addresses in the same request.
    if (!this.#prefetched) {
      this.#prefetched = true;
      for (const p of likelyPeers(this.rank, this.size)) {
        if (this.#addresses.has(p)) continue;
        const w = Promise.withResolvers<string>();
        this.#addresses.set(p, w.promise);
        w.promise.catch(() => this.#addresses.delete(p));
        this.#lookups.set(p, w);
      }
    }
    const batch = [...this.#lookups];
    this.#lookups.clear();
    try {
      const values = await this.#opts.store.multiGet(batch.map(([p]) => `addr/${p}`), this.#opts.timeoutMs);
      const dec = new TextDecoder();
      batch.forEach(([, w], i) => w.resolve(dec.decode(values[i])));
    } catch (err) {
      for (const [, w] of batch) w.reject(err);
    }
  }

  /** Dials `peer`: its channel, or "crossed" when the peer keeps its own dial to this rank. */
  async #dial(peer: number): Promise<TcpChannel | "crossed"> {
    this.#dialing.add(peer);
    try {
      const addr = await this.#addressOf(peer);
      const deadline = Date.now() + this.#opts.timeoutMs;
      // A peer whose listener is flooded may drop our connection before its verdict (it cannot tell us
      // from the flood yet): dial again until the deadline. A verdict, or a refused connect, is final.
      for (let pause = REDIAL_MIN_MS;; pause = Math.min(pause * 2, REDIAL_MAX_MS)) {
        try {
          return await this.#dialOnce(peer, addr, deadline);
        } catch (e) {
          if (!(e instanceof DroppedBeforeVerdict)) throw e;
          if (this.#closed) throw this.#closed;
          if (Date.now() + pause >= deadline) throw e.cause;
          await new Promise((r) => setTimeout(r, pause));
        }
      }
    } finally {
      this.#dialing.delete(peer);
    }
  }

  async #dialOnce(peer: number, addr: string, deadline: number): Promise<TcpChannel | "crossed"> {
    const ctx = { rank: this.rank, peer, op: "connect" };
    const colon = addr.lastIndexOf(":");
    const hostname = addr.slice(0, colon);
    const port = Number(addr.slice(colon + 1));
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname, port });
    } catch (e) {
      if (isPermissionDenied(e)) {
        throw netPermissionError(`cannot connect to rank ${peer}`, netFlag(hostname), e, ctx);
      }
      // It published this address once it listened: a refused connection means it is gone.
      const Kind = e instanceof Deno.errors.ConnectionRefused ? PeerLostError : TransportError;
      throw new Kind(`cannot connect to rank ${peer} at ${addr}: ${(e as Error).message}`, {
        ...ctx,
        cause: e,
      });
    }
    this.#pendingConns.add(conn);
    const watched = watchReplies(conn);
    let verdict: "ok" | "crossed";
    try {
      verdict = await withTimeout(
        sendHello(
          watched.conn,
          { group: this.#opts.group ?? 0, from: this.rank, to: peer, size: this.size },
          this.#opts.token,
          addr,
        ),
        Math.max(0, deadline - Date.now()),
        () => new TransportError(`handshake with rank ${peer} at ${addr} did not complete`, ctx),
      );
    } catch (e) {
      this.#pendingConns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
      const timedOut = e instanceof TransportError && Date.now() >= deadline;
      if (!watched.answered() && !(e instanceof AuthError) && !timedOut) throw new DroppedBeforeVerdict(e);
      throw e;
    }
    this.#pendingConns.delete(conn);
    if (this.#closed || verdict === "crossed") {
      conn.close();
      if (this.#closed) throw this.#closed;
      return "crossed";
    }
    const ch = new TcpChannel(
      conn,
      this.rank,
      peer,
      this.#opts.checksum,
      this.#spinUs,
      this.#findSockets,
      this.#yields,
    );
    this.#open.add(ch);
    this.#linked.add(peer);
    return ch;
  }

  #awaitDial(peer: number): DialWait {
    let cancel = () => {};
    const promise = new Promise<TcpChannel>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(peer);
        reject(
          new TransportError(
            `rank ${peer} did not connect within ${this.#opts.timeoutMs} ms`,
            { rank: this.rank, peer, op: "accept" },
          ),
        );
      }, this.#opts.timeoutMs);
      const w: Waiter = {
        resolve: (c) => {
          clearTimeout(timer);
          resolve(c);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.#waiters.set(peer, w);
      cancel = () => {
        clearTimeout(timer);
        if (this.#waiters.get(peer) === w) this.#waiters.delete(peer);
      };
    });
    promise.catch(() => {}); // a cancelled wait, or one whose loser nobody awaits
    return { promise, cancel };
  }

  /**
   * Whether to take a peer's dial (decided before the handshake answers, so that no dial of this rank
   * starts in between): not when a link to it exists or is being admitted, nor when this rank, the
   * higher, is dialing it too (then the peer is told CROSSED and takes this rank's connection).
   */
  #takes(from: number): boolean {
    if (this.#closed || this.#accepted.has(from) || this.#linked.has(from)) return false;
    return !(from < this.rank && this.#dialing.has(from));
  }

  /** Starts the handshake of an accepted connection, making room first when too many are waiting. */
  #admit(conn: Deno.TcpConn): void {
    if (this.#handshaking.size >= this.#maxHandshakes) this.#dropOldestHandshake();
    this.#handshake(conn);
  }

  /** Closes the longest-waiting handshake; false when none is waiting. */
  #dropOldestHandshake(): boolean {
    const oldest = this.#handshaking.values().next();
    if (oldest.done) return false;
    this.#handshaking.delete(oldest.value);
    try {
      oldest.value.close();
    } catch { /* closed */ }
    return true;
  }

  async #handshake(conn: Deno.TcpConn): Promise<void> {
    this.#handshaking.add(conn);
    let from: number | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let admitted: { peer: number; ready: PromiseWithResolvers<TcpChannel> } | undefined;
    const admit = (peer: number) => {
      if (!this.#takes(peer)) return false;
      const ready = Promise.withResolvers<TcpChannel>();
      ready.promise.catch(() => {}); // awaited only if this rank asks for the link
      this.#accepted.set(peer, ready.promise);
      admitted = { peer, ready };
      return true;
    };
    // A connection that sends nothing for a second is dropped; one whose hello is under way (a busy
    // peer: hundreds of ranks in one process at start-up) gets the transport's handshake time.
    let heard = false;
    const watched = {
      read: (b: Uint8Array) =>
        conn.read(b).then((n) => {
          if (n) heard = true;
          return n;
        }),
      write: (b: Uint8Array) => conn.write(b),
      close: () => conn.close(),
    } as unknown as Deno.Conn;
    try {
      from = await Promise.race([
        acceptHello(
          watched,
          { group: this.#opts.group ?? 0, rank: this.rank, size: this.size },
          this.#opts.token,
          admit,
        ),
        new Promise<null>((r) => {
          timer = setTimeout(() => {
            if (!heard) return r(null);
            timer = setTimeout(() => r(null), HANDSHAKE_MAX_MS);
          }, HANDSHAKE_IDLE_MS);
        }),
      ]);
    } catch {
      from = null;
    } finally {
      clearTimeout(timer);
      this.#handshaking.delete(conn);
    }
    if (from === null || this.#closed || admitted?.peer !== from) {
      try {
        conn.close();
      } catch { /* closed */ }
      if (admitted) {
        this.#accepted.delete(admitted.peer);
        admitted.ready.reject(
          this.#closed ??
            new TransportError(`the handshake with rank ${admitted.peer} failed`, {
              rank: this.rank,
              peer: admitted.peer,
              op: "accept",
            }),
        );
      }
      return;
    }
    const ch = new TcpChannel(
      conn,
      this.rank,
      from,
      this.#opts.checksum,
      this.#spinUs,
      this.#findSockets,
      this.#yields,
    );
    this.#open.add(ch);
    admitted.ready.resolve(ch);
    const w = this.#waiters.get(from);
    if (w) {
      this.#waiters.delete(from);
      w.resolve(ch);
    }
  }

  /** Closes the listener and every connection. */
  async close(reason?: Error): Promise<void> {
    if (this.#closed) return;
    this.#closed = reason ??
      new TransportError("transport closed", { rank: this.rank, op: "close" });
    this.#stopAccepting.abort();
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const [, w] of this.#waiters) w.reject(this.#closed);
    this.#waiters.clear();
    for (const c of [...this.#pendingConns, ...this.#handshaking]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    // A failure is told to every peer first, in-band (TcpChannel.abort); a plain close says goodbye.
    await Promise.all(
      [...this.#open].map((ch) => reason instanceof ChoirError ? ch.abort(reason) : ch.close()),
    );
    await this.#acceptLoop;
  }
}

/**
 * Peers a collective is likely to link `rank` to, besides the one asked for: ring neighbours, the
 * ranks at distance 2^k either way (recursive doubling, binomial and dissemination partners) and the
 * binary-tree parent and children. At most about 3 log2(size) + 5.
 */
function likelyPeers(rank: number, size: number): number[] {
  const out = new Set<number>();
  for (let d = 1; d < size; d *= 2) {
    out.add((rank + d) % size);
    out.add((rank - d + size) % size);
    if ((rank ^ d) < size) out.add(rank ^ d);
  }
  if (rank > 0) out.add((rank - 1) >> 1);
  for (const c of [2 * rank + 1, 2 * rank + 2]) if (c < size) out.add(c);
  out.delete(rank);
  return [...out];
}

function withTimeout<T>(p: Promise<T>, ms: number, err: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => timer = setTimeout(() => reject(err()), ms)),
  ]).finally(() => clearTimeout(timer));
}

/** A dial the peer closed or reset before answering the hello: worth another try. */
class DroppedBeforeVerdict extends Error {
  constructor(override readonly cause: unknown) {
    super("the peer dropped the connection before its verdict");
  }
}

/**
 * `conn` as the handshake sees it, noting whether the peer sent anything: a peer that answered gave a
 * verdict, one that did not may only have been shedding a flood.
 */
function watchReplies(conn: Deno.TcpConn): { conn: Deno.TcpConn; answered: () => boolean } {
  let answered = false;
  const watched = new Proxy(conn, {
    get(target, key) {
      if (key === "read") {
        return async (buf: Uint8Array) => {
          const n = await target.read(buf);
          if (n !== null && n > 0) answered = true;
          return n;
        };
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { conn: watched, answered: () => answered };
}
