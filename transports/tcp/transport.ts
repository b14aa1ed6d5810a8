/**
 * @module
 * The TCP transport: a listener per rank, addresses exchanged through the store, one connection per
 * pair of ranks (the higher rank connects to the lower), each opened by the mutual proof of the job token
 * (handshake.ts).
 */

import { ChoirError, TransportError } from "../../errors.ts";
import { isPermissionDenied, netFlag, netPermissionError } from "../permission.ts";
import type { Store } from "../store/store.ts";
import { acceptHello, sendHello } from "./handshake.ts";
import { TcpChannel } from "./channel.ts";
import type { Channel, Transport } from "../transport.ts";
import { channelOnce } from "../channel_once.ts";
import { checkToken } from "../token.ts";

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

/** How long a freshly accepted connection may take to finish its handshake. */
const HANDSHAKE_MS = 10_000;

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
  #closed: Error | null = null;
  readonly #acceptLoop: Promise<void>;

  private constructor(opts: TcpTransportOptions, listener: Deno.TcpListener) {
    this.#opts = opts;
    this.rank = opts.rank;
    this.size = opts.size;
    this.#listener = listener;
    this.#acceptLoop = this.#acceptAll();
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
    const ctx = { rank: this.rank, peer, op: "connect" };
    const addrBytes = await this.#opts.store.get(`addr/${peer}`);
    const addr = new TextDecoder().decode(addrBytes);
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
    try {
      await withTimeout(
        sendHello(
          conn,
          { group: this.#opts.group ?? 0, from: this.rank, to: peer, size: this.size },
          this.#opts.token,
          addr,
        ),
        this.#opts.timeoutMs,
        () => new TransportError(`handshake with rank ${peer} at ${addr} did not complete`, ctx),
      );
    } catch (e) {
      this.#pendingConns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
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

  async #acceptAll(): Promise<void> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      this.#handshake(conn);
    }
  }

  async #handshake(conn: Deno.TcpConn): Promise<void> {
    this.#pendingConns.add(conn);
    let from: number | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      from = await Promise.race([
        acceptHello(
          conn,
          { group: this.#opts.group ?? 0, rank: this.rank, size: this.size },
          this.#opts.token,
        ),
        new Promise<null>((r) => timer = setTimeout(() => r(null), HANDSHAKE_MS)),
      ]);
    } catch {
      from = null;
    } finally {
      clearTimeout(timer);
      this.#pendingConns.delete(conn);
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
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const [, w] of this.#waiters) w.reject(this.#closed);
    this.#waiters.clear();
    for (const c of this.#pendingConns) {
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
