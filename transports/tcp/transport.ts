/**
 * @module
 * The TCP transport: a listener per rank, addresses exchanged through the store, one connection per
 * pair of ranks (the higher rank connects to the lower), each opened by the mutual proof of the job token
 * (handshake.ts). The listener is bounded: a connection that does not finish its handshake within a
 * second is dropped, at most max(64, size) wait at once, and an accept error (EMFILE) pauses the accept
 * loop, never ends it.
 */

import { AuthError, ChoirError, TransportError } from "../../errors.ts";
import { isPermissionDenied, netFlag, netPermissionError } from "../permission.ts";
import type { Store } from "../store/store.ts";
import { acceptHello, sendHello } from "./handshake.ts";
import { TcpChannel } from "./channel.ts";
import type { Channel, Transport } from "../transport.ts";
import { channelOnce } from "../channel_once.ts";
import { checkToken } from "../token.ts";
import { acceptLoop, isFdExhaustion } from "../accept_loop.ts";
import { HANDSHAKE_IDLE_MS, MIN_PENDING_HANDSHAKES } from "../limits.ts";

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
}

/** Pauses between dials refused before the handshake's verdict (the peer dropped the connection). */
const REDIAL_MIN_MS = 10;
const REDIAL_MAX_MS = 500;

interface Waiter {
  resolve: (c: TcpChannel) => void;
  reject: (e: Error) => void;
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
  readonly #accepted = new Map<number, TcpChannel>();
  readonly #waiters = new Map<number, Waiter>();
  readonly #open = new Set<TcpChannel>();
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

  /** The channel to `peer`; the first call connects (higher rank dials) or awaits the peer's dial. */
  channel(peer: number): Promise<Channel> {
    const owner = { rank: this.rank, size: this.size, closed: this.#closed, channels: this.#channels };
    return channelOnce(owner, peer, (p) => p < this.rank ? this.#dial(p) : this.#awaitDial(p));
  }

  async #dial(peer: number): Promise<TcpChannel> {
    const addr = new TextDecoder().decode(await this.#opts.store.get(`addr/${peer}`));
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
  }

  async #dialOnce(peer: number, addr: string, deadline: number): Promise<TcpChannel> {
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
      throw new TransportError(`cannot connect to rank ${peer} at ${addr}: ${(e as Error).message}`, {
        ...ctx,
        cause: e,
      });
    }
    this.#pendingConns.add(conn);
    const watched = watchReplies(conn);
    try {
      await withTimeout(
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
    if (this.#closed) {
      conn.close();
      throw this.#closed;
    }
    const ch = new TcpChannel(conn, this.rank, peer, this.#opts.checksum);
    this.#open.add(ch);
    return ch;
  }

  #awaitDial(peer: number): Promise<TcpChannel> {
    const ready = this.#accepted.get(peer);
    if (ready) return Promise.resolve(ready);
    return new Promise<TcpChannel>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(peer);
        reject(
          new TransportError(
            `rank ${peer} did not connect within ${this.#opts.timeoutMs} ms`,
            { rank: this.rank, peer, op: "accept" },
          ),
        );
      }, this.#opts.timeoutMs);
      this.#waiters.set(peer, {
        resolve: (c) => {
          clearTimeout(timer);
          resolve(c);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
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
    try {
      from = await Promise.race([
        acceptHello(
          conn,
          { group: this.#opts.group ?? 0, rank: this.rank, size: this.size },
          this.#opts.token,
        ),
        new Promise<null>((r) => timer = setTimeout(() => r(null), HANDSHAKE_IDLE_MS)),
      ]);
    } catch {
      from = null;
    } finally {
      clearTimeout(timer);
      this.#handshaking.delete(conn);
    }
    if (from === null || this.#closed || this.#accepted.has(from)) {
      try {
        conn.close();
      } catch { /* closed */ }
      return;
    }
    const ch = new TcpChannel(conn, this.rank, from, this.#opts.checksum);
    this.#open.add(ch);
    this.#accepted.set(from, ch);
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
