/**
 * @module
 * Writes on a `Deno.TcpConn` through libc `send` with `MSG_DONTWAIT`, on the calling thread, where Deno's
 * `conn.write` takes a trip through its event loop (22-30 us a call here against the syscall's own cost,
 * docs/scale.md); the store server and each store client write once per request. Deno exposes no socket
 * fd, so a sender looks, at its first writes, for the descriptor whose local and peer IPv4 addresses are
 * the connection's: near the last one this thread found (a new socket takes the lowest free number, so
 * sockets made one after another sit close together), then in a map of the thread's sockets by port
 * that a scan of every descriptor refreshes, at most as often as the misses pay for it. A lookup never
 * scans every descriptor per connection. What `send` does not take now (a full buffer, an error, a socket
 * not found) the caller writes through Deno's own `write`, which then reports a real failure. Mixing the
 * two on one connection is safe while the caller writes one thing at a time: the bytes go out in order,
 * and Deno's edge-triggered reactor waits for writability only after a write of its own finds the buffer
 * full. Linux only; without FFI permission or libc, nothing is sent this way. Leaves reads to Deno.
 */

import {
  type Ipv4,
  ipv4,
  lookUpSocket,
  SOCKET_FLAGS,
  type SocketLibc,
  socketLibc,
  socketLookupStats,
} from "../socket_lookup.ts";

/** Writes of one connection that look for its socket before it keeps to Deno's writes. */
const TRIES = 4;

/** This thread's socket lookups (transports/socket_lookup.ts), under the name the store's stats use. */
export const fdSendStats: typeof socketLookupStats = socketLookupStats;

/** Sends on one connection's socket, once found; made by {@link fdSender}. */
export class FdSender {
  readonly #libc: SocketLibc;
  readonly #local: Ipv4;
  readonly #peer: Ipv4;
  #fd = -1;
  #tries = TRIES;
  #closed = false;

  /** Use {@link fdSender}. */
  constructor(fns: SocketLibc, local: Ipv4, peer: Ipv4, accepted: boolean) {
    this.#libc = fns;
    this.#local = local;
    this.#peer = peer;
    if (accepted) {
      // Looked up now, once: right after accept its number is most likely just above the last one.
      this.#tries = 0;
      this.#fd = lookUpSocket(fns, local, peer, "accepted");
    }
  }

  /** The descriptor, -1 while not found. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Sends what the socket takes of `bytes` now: the count sent, 0 when it would block or failed (the
   * caller's Deno write that follows reports a real failure), when the socket is not found (yet), and
   * always once {@link close}d.
   */
  trySend(bytes: Uint8Array): number {
    if (this.#closed || bytes.byteLength === 0) return 0;
    if (this.#fd < 0) {
      if (this.#tries === 0) return 0;
      this.#tries--;
      this.#fd = lookUpSocket(this.#libc, this.#local, this.#peer, "lazy");
      if (this.#fd < 0) return 0;
    }
    const n = Number(this.#libc.send(this.#fd, bytes, BigInt(bytes.byteLength), SOCKET_FLAGS));
    return n > 0 ? n : 0;
  }

  /**
   * Stops using the descriptor; call it before (or when) the connection closes, since its number may
   * then be given to another socket.
   */
  close(): void {
    this.#closed = true;
  }
}

/**
 * A sender on `conn`'s socket, or null where FFI is not granted, this is not Linux or the connection is
 * not IPv4 TCP (a caller then writes through Deno only). `accepted`: `conn` was just accepted, and its
 * socket is looked for now, near the last one found (once); else it is looked for at its first writes,
 * near the last one and in the thread's map of sockets (a client's connections, which complete in any
 * order).
 */
export function fdSender(conn: Deno.Conn, accepted = false): FdSender | null {
  const l = socketLibc();
  if (l === null) return null;
  const local = ipv4(conn.localAddr);
  const peer = ipv4(conn.remoteAddr);
  if (local === null || peer === null) return null;
  return new FdSender(l, local, peer, accepted);
}
