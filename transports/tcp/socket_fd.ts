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
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** `MSG_DONTWAIT | MSG_NOSIGNAL`: never block, never raise SIGPIPE. */
const FLAGS = 0x40 | 0x4000;
/** `EAGAIN` (== `EWOULDBLOCK` on Linux). */
const EAGAIN = 11;
/** `EINTR`. */
const EINTR = 4;
/** The highest descriptor number looked at when searching for a connection's socket. */
const MAX_FD = 65536;
/** `AF_INET`, `AF_INET6`. */
const AF_INET = 2;
const AF_INET6 = 10;

let lib: { fn: Symbols; errno: Deno.UnsafePointerView } | null | undefined;

/** libc, loaded once; null where FFI is not allowed or this is not Linux. */
function load(): { fn: Symbols; errno: Deno.UnsafePointerView } | null {
  if (lib !== undefined) return lib;
  lib = null;
  try {
    // Query first: without --allow-ffi, dlopen would prompt on a terminal instead of failing.
    if (Deno.build.os !== "linux" || Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return null;
    }
    const fn = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
    const p = fn.__errno_location();
    // errno is per thread, and JavaScript runs on one: its address is fixed for this isolate.
    if (p !== null) lib = { fn, errno: new Deno.UnsafePointerView(p) };
  } catch {
    lib = null;
  }
  return lib;
}

/** The port of a sockaddr (the same offset for IPv4 and IPv6). */
const portOf = (sa: Uint8Array) => (sa[2] << 8) | sa[3];

/** Whether `sa` (as getsockname fills it) is `addr`. */
function matches(sa: Uint8Array, addr: Deno.NetAddr): boolean {
  if (portOf(sa) !== addr.port) return false;
  const family = sa[0] | (sa[1] << 8);
  if (family === AF_INET) return sa.subarray(4, 8).join(".") === addr.hostname;
  return family === AF_INET6;
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
    if (l.fn.getsockname(fd, sa, lenBytes) !== 0) {
      // A long run of closed descriptors: past the highest open one.
      if (++misses > 1024) break;
      continue;
    }
    misses = 0;
    if (!matches(sa, local)) continue;
    len[0] = sa.byteLength;
    if (l.fn.getpeername(fd, sa, lenBytes) === 0 && matches(sa, remote)) return new SocketFd(l, fd);
  }
  return null;
}

/** Nonblocking send and receive on one socket descriptor. */
export class SocketFd {
  readonly #fn: Symbols;
  readonly #errno: Deno.UnsafePointerView;
  /** The descriptor. */
  readonly fd: number;

  /** Use {@link findSocketFd}. */
  constructor(l: { fn: Symbols; errno: Deno.UnsafePointerView }, fd: number) {
    this.#fn = l.fn;
    this.#errno = l.errno;
    this.fd = fd;
  }

  /**
   * Sends what the socket takes of `buf` now: the bytes sent, 0 when it would block. Throws an Error
   * with the errno on a failure (the caller's Deno write then reports the broken connection).
   */
  trySend(buf: Uint8Array): number {
    for (;;) {
      const n = Number(this.#fn.send(this.fd, buf, BigInt(buf.byteLength), FLAGS));
      if (n >= 0) return n;
      const e = this.#errno.getInt32(0);
      if (e === EAGAIN) return 0;
      if (e !== EINTR) throw new Error(`send failed (errno ${e})`);
    }
  }

  /**
   * Receives what has arrived, up to `buf`'s length: the bytes read, 0 when nothing is there yet, -1
   * when the peer closed. Throws an Error with the errno on a failure.
   */
  tryRecv(buf: Uint8Array): number {
    for (;;) {
      const n = Number(this.#fn.recv(this.fd, buf, BigInt(buf.byteLength), FLAGS));
      if (n > 0) return n;
      if (n === 0) return -1;
      const e = this.#errno.getInt32(0);
      if (e === EAGAIN) return 0;
      if (e !== EINTR) throw new Error(`recv failed (errno ${e})`);
    }
  }
}
