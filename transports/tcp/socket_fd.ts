/**
 * @module
 * Nonblocking libc `send`/`recv` on the socket behind a `Deno.TcpConn`, for the TCP channel's fast
 * path. Deno exposes no socket fd, so {@link findSocketFd} finds it by asking every open descriptor
 * for its local and peer address (`getsockname`/`getpeername`) and keeping the one that matches the
 * connection's. The calls run on the calling thread with `MSG_DONTWAIT` (about a microsecond each,
 * where an await on Deno's `read` costs a trip through its event loop and, when the data has not come
 * yet, a wake-up of tens of microseconds on this machine), and a call that would block returns 0 so
 * that the caller can fall back to Deno's own `read`/`write` on the same connection. Mixing the two
 * is safe: Deno's reactor is edge-triggered and, after a read that finds nothing, waits for the next
 * arrival, which these calls never hide. Linux only; without `--allow-ffi` or libc, nothing is found
 * and the channel keeps to Deno's calls.
 */

/** The libc functions bound. */
const SYMBOLS = {
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
} as const;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** `MSG_DONTWAIT | MSG_NOSIGNAL`: never block, never raise SIGPIPE. */
const FLAGS = 0x40 | 0x4000;
/** The highest descriptor number looked at when searching for a connection's socket. */
const MAX_FD = 65536;
/** `AF_INET`. */
const AF_INET = 2;

let lib: Symbols | null | undefined;

/** libc, loaded once; null where FFI is not allowed or this is not Linux. */
function load(): Symbols | null {
  if (lib !== undefined) return lib;
  lib = null;
  try {
    // Query first: without --allow-ffi, dlopen would prompt on a terminal instead of failing.
    if (Deno.build.os !== "linux" || Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return null;
    }
    lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch {
    lib = null;
  }
  return lib;
}

/** The port of a sockaddr (the same offset for IPv4 and IPv6). */
const portOf = (sa: Uint8Array) => (sa[2] << 8) | sa[3];

/**
 * Whether `sa` (as getsockname fills it) is `addr`. IPv4 only: an IPv6 address is never matched (its text
 * has several spellings, and matching the port alone could pick another connection's socket), so IPv6
 * links keep Deno's calls.
 */
function matches(sa: Uint8Array, addr: Deno.NetAddr): boolean {
  if (portOf(sa) !== addr.port) return false;
  const family = sa[0] | (sa[1] << 8);
  return family === AF_INET && sa.subarray(4, 8).join(".") === addr.hostname;
}

/**
 * The descriptor of `conn`'s socket, or null where it cannot be found (no FFI, not Linux, not a TCP
 * connection). Costs one or two libc calls per open descriptor up to the one found; call it once per
 * connection, right after it is made.
 */
export function findSocketFd(conn: Deno.Conn): SocketFd | null {
  const l = load();
  const local = conn.localAddr as Deno.NetAddr;
  const remote = conn.remoteAddr as Deno.NetAddr;
  if (!l || local.transport !== "tcp" || remote.transport !== "tcp") return null;
  const sa = new Uint8Array(128);
  const len = new Uint32Array(1);
  const lenBytes = new Uint8Array(len.buffer);
  let misses = 0;
  for (let fd = 0; fd < MAX_FD; fd++) {
    len[0] = sa.byteLength;
    if (l.getsockname(fd, sa, lenBytes) !== 0) {
      // A long run of closed descriptors: past the highest open one.
      if (++misses > 1024) break;
      continue;
    }
    misses = 0;
    if (!matches(sa, local)) continue;
    len[0] = sa.byteLength;
    if (l.getpeername(fd, sa, lenBytes) === 0 && matches(sa, remote)) return new SocketFd(l, fd);
  }
  return null;
}

/**
 * Nonblocking send and receive on one socket descriptor. A failed call counts as one that would
 * block: errno is not read (between a call and the read of errno the runtime may make calls of its
 * own on this thread, so a stale value could pass for a broken connection), and the caller's Deno
 * read or write, which comes after the spin, reports a real failure.
 */
export class SocketFd {
  readonly #fn: Symbols;
  /** The descriptor. */
  readonly fd: number;

  /** Use {@link findSocketFd}. */
  constructor(fn: Symbols, fd: number) {
    this.#fn = fn;
    this.fd = fd;
  }

  /** Sends what the socket takes of `buf` now: the bytes sent, 0 when it would block (or failed). */
  trySend(buf: Uint8Array): number {
    const n = Number(this.#fn.send(this.fd, buf, BigInt(buf.byteLength), FLAGS));
    return n > 0 ? n : 0;
  }

  /**
   * Receives what has arrived, up to `buf`'s length: the bytes read, 0 when nothing is there yet (or
   * the call failed), -1 when the peer closed.
   */
  tryRecv(buf: Uint8Array): number {
    const n = Number(this.#fn.recv(this.fd, buf, BigInt(buf.byteLength), FLAGS));
    return n > 0 ? n : n === 0 ? -1 : 0;
  }
}
