/**
 * @module
 * Nonblocking libc `send`/`recv` on the socket behind a `Deno.TcpConn`, for the TCP channel's fast
 * path. Deno exposes no socket fd, so {@link findSocketFd} finds it by the connection's local and
 * peer addresses (transports/socket_lookup.ts). The calls run on the calling thread with
 * `MSG_DONTWAIT` (about a microsecond each, where an await on Deno's `read` costs a trip through its
 * event loop and, when the data has not come yet, a wake-up of tens of microseconds on this machine),
 * and a call that would block returns 0 so
 * that the caller can fall back to Deno's own `read`/`write` on the same connection. Mixing the two
 * is safe: Deno's reactor is edge-triggered and, after a read that finds nothing, waits for the next
 * arrival, which these calls never hide. A same-host socket found is switched to Reno congestion control
 * (congestion.ts). Linux only; without `--allow-ffi` or libc, nothing is found
 * and the channel keeps to Deno's calls.
 */

import { useSameHostCongestion } from "./congestion.ts";
import { ipv4, lookUpSocket, SOCKET_FLAGS, type SocketLibc, socketLibc } from "../socket_lookup.ts";

/**
 * The descriptor of `conn`'s socket, or null where it cannot be found (no FFI, not Linux, not an IPv4
 * TCP connection). Call it once per connection, right after it is made: a miss near the last socket
 * found and in the thread's map costs a scan of every descriptor (transports/socket_lookup.ts).
 */
export function findSocketFd(conn: Deno.Conn): SocketFd | null {
  const l = socketLibc();
  const local = ipv4(conn.localAddr);
  const remote = ipv4(conn.remoteAddr);
  if (!l || !local || !remote) return null;
  const fd = lookUpSocket(l, local, remote, "must");
  if (fd < 0) return null;
  useSameHostCongestion(l, fd, local, remote);
  return new SocketFd(l, fd);
}

/**
 * Nonblocking send and receive on one socket descriptor. A failed call counts as one that would
 * block: errno is not read (between a call and the read of errno the runtime may make calls of its
 * own on this thread, so a stale value could pass for a broken connection), and the caller's Deno
 * read or write, which comes after the spin, reports a real failure.
 */
export class SocketFd {
  readonly #fn: SocketLibc;
  /** The descriptor. */
  readonly fd: number;

  /** Use {@link findSocketFd}. */
  constructor(fn: SocketLibc, fd: number) {
    this.#fn = fn;
    this.fd = fd;
  }

  /** Gives this thread's core to another runnable thread for a moment (sched_yield). */
  yieldCore(): void {
    this.#fn.sched_yield();
  }

  /** Sends what the socket takes of `buf` now: the bytes sent, 0 when it would block (or failed). */
  trySend(buf: Uint8Array): number {
    const n = Number(this.#fn.send(this.fd, buf, BigInt(buf.byteLength), SOCKET_FLAGS));
    return n > 0 ? n : 0;
  }

  /**
   * Receives what has arrived, up to `buf`'s length: the bytes read, 0 when nothing is there yet (or
   * the call failed), -1 when the peer closed.
   */
  tryRecv(buf: Uint8Array): number {
    const n = Number(this.#fn.recv(this.fd, buf, BigInt(buf.byteLength), SOCKET_FLAGS));
    return n > 0 ? n : n === 0 ? -1 : 0;
  }
}
