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

const SYMBOLS = {
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** `MSG_DONTWAIT | MSG_NOSIGNAL`: never block, never raise SIGPIPE on a closed peer. */
const FLAGS = 0x40 | 0x4000;
const AF_INET = 2;
/** A full scan (from descriptor 0) stops after this many closed descriptors in a row. */
const CLOSED_RUN = 1024;
/**
 * Descriptors looked at above the last one found and below it (a number freed and given again): wide
 * for a socket just accepted (the accept loop's sockets come one after another, other threads' in
 * between), narrow for a lazy lookup, which the map covers.
 */
const ABOVE_AT_ACCEPT = 512;
const ABOVE = 16;
const BELOW = 4;
/**
 * A full scan costs about a microsecond per open descriptor: one runs only once the lookups missed
 * since the last cover it at this many probes each.
 */
const PROBES_PER_MISS = 32;
/** Writes of one connection that look for its socket before it keeps to Deno's writes. */
const TRIES = 4;

let libc: Libc | null | undefined;
/** Where this thread found its last socket: the next one is most likely just above it. */
let hint = -1;
/** This thread's IPv4 sockets by local and peer port, as of the last full scan (checked before use). */
let byPorts = new Map<number, number>();
/** Open descriptors at the last full scan (-1: none yet) and lookups missed since. */
let openAtScan = -1;
let missedSinceScan = 0;

/** libc, loaded once per thread; null where FFI is not granted or this is not Linux. */
function load(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  try {
    // Query first: without --allow-ffi, dlopen would prompt on a terminal instead of failing.
    if (Deno.build.os !== "linux" || Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return null;
    }
    libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch {
    libc = null;
  }
  return libc;
}

/**
 * This thread's lookups: sockets found and missed, descriptors probed, full scans (tests and benchmarks
 * read them).
 */
export const fdSendStats: { found: number; missed: number; probes: number; scans: number } = {
  found: 0,
  missed: 0,
  probes: 0,
  scans: 0,
};

/** Sends on one connection's socket, once found; made by {@link fdSender}. */
export class FdSender {
  readonly #libc: Libc;
  readonly #local: Ipv4;
  readonly #peer: Ipv4;
  #fd = -1;
  #tries = TRIES;
  #closed = false;

  /** Use {@link fdSender}. */
  constructor(fns: Libc, local: Ipv4, peer: Ipv4, accepted: boolean) {
    this.#libc = fns;
    this.#local = local;
    this.#peer = peer;
    if (accepted) {
      // Looked up now, once: right after accept its number is most likely just above the last one.
      this.#tries = 0;
      this.#fd = lookUp(fns, local, peer, true);
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
      this.#fd = lookUp(this.#libc, this.#local, this.#peer, false);
      if (this.#fd < 0) return 0;
    }
    const n = Number(this.#libc.send(this.#fd, bytes, BigInt(bytes.byteLength), FLAGS));
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

/** An IPv4 address: its four bytes and port. */
interface Ipv4 {
  a: number[];
  port: number;
}

/** The four address bytes and port of an IPv4 `Deno.NetAddr`, or null for anything else. */
function ipv4(addr: Deno.Addr): Ipv4 | null {
  if (addr.transport !== "tcp") return null;
  const parts = addr.hostname.split(".");
  if (parts.length !== 4) return null;
  const a = parts.map(Number);
  if (a.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return null;
  return { a, port: addr.port };
}

/** Whether the sockaddr in `sa` is the IPv4 address `want`. */
function same(sa: Uint8Array, want: Ipv4): boolean {
  return (sa[0] | (sa[1] << 8)) === AF_INET && ((sa[2] << 8) | sa[3]) === want.port &&
    sa[4] === want.a[0] && sa[5] === want.a[1] && sa[6] === want.a[2] && sa[7] === want.a[3];
}

const sa = new Uint8Array(128);
const saLen = new Uint32Array(1);
const saLenBytes = new Uint8Array(saLen.buffer);

/** Whether descriptor `fd` is a socket with exactly these local and peer addresses. */
function isConn(
  l: Libc,
  fd: number,
  local: Ipv4,
  peer: Ipv4,
): boolean {
  fdSendStats.probes++;
  // The peer first: every connection of a server shares its local address.
  saLen[0] = sa.byteLength;
  if (l.getpeername(fd, sa, saLenBytes) !== 0 || !same(sa, peer)) return false;
  saLen[0] = sa.byteLength;
  return l.getsockname(fd, sa, saLenBytes) === 0 && same(sa, local);
}

/**
 * A sender on `conn`'s socket, or null where FFI is not granted, this is not Linux or the connection is
 * not IPv4 TCP (a caller then writes through Deno only). `accepted`: `conn` was just accepted, and its
 * socket is looked for now, near the last one found (once); else it is looked for at its first writes,
 * near the last one and in the thread's map of sockets (a client's connections, which complete in any
 * order).
 */
export function fdSender(conn: Deno.Conn, accepted = false): FdSender | null {
  const l = load();
  if (l === null) return null;
  const local = ipv4(conn.localAddr);
  const peer = ipv4(conn.remoteAddr);
  if (local === null || peer === null) return null;
  return new FdSender(l, local, peer, accepted);
}

/** The descriptor of the socket with these addresses, or -1 (see the module comment for the order). */
function lookUp(l: Libc, local: Ipv4, peer: Ipv4, accepted: boolean): number {
  let fd = hint < 0 ? -1 : nearHint(l, hint, local, peer, accepted ? ABOVE_AT_ACCEPT : ABOVE);
  if (fd < 0 && !accepted) fd = fromMap(l, local, peer);
  // Accepted sockets scan only with no hint yet (the thread's first).
  const scan = accepted ? hint < 0 : openAtScan < 0 || (missedSinceScan + 1) * PROBES_PER_MISS >= openAtScan;
  if (fd < 0 && scan) {
    scanAll(l);
    fd = fromMap(l, local, peer);
  }
  if (fd < 0) {
    fdSendStats.missed++;
    missedSinceScan++;
    return -1;
  }
  hint = fd;
  fdSendStats.found++;
  return fd;
}

function nearHint(l: Libc, at: number, local: Ipv4, peer: Ipv4, above: number): number {
  // Upwards first: with no descriptor freed meanwhile, a new socket is numbered above the last one.
  for (let d = 1; d <= above; d++) if (isConn(l, at + d, local, peer)) return at + d;
  for (let fd = at; fd >= 0 && fd >= at - BELOW; fd--) if (isConn(l, fd, local, peer)) return fd;
  return -1;
}

function fromMap(l: Libc, local: Ipv4, peer: Ipv4): number {
  const fd = byPorts.get(local.port * 65536 + peer.port);
  return fd !== undefined && isConn(l, fd, local, peer) ? fd : -1;
}

/** Maps every IPv4 socket of the process by its ports (other threads' too: each use checks first). */
function scanAll(l: Libc): void {
  const map = new Map<number, number>();
  let open = 0;
  for (let fd = 0, closed = 0; closed < CLOSED_RUN; fd++) {
    fdSendStats.probes++;
    saLen[0] = sa.byteLength;
    // getsockname fails on a closed descriptor (EBADF) as on a non-socket: both count as a gap.
    if (l.getsockname(fd, sa, saLenBytes) !== 0) {
      closed++;
      continue;
    }
    closed = 0;
    open++;
    if ((sa[0] | (sa[1] << 8)) !== AF_INET) continue;
    const localPort = (sa[2] << 8) | sa[3];
    saLen[0] = sa.byteLength;
    if (l.getpeername(fd, sa, saLenBytes) !== 0) continue;
    map.set(localPort * 65536 + ((sa[2] << 8) | sa[3]), fd);
  }
  byPorts = map;
  openAtScan = open;
  missedSinceScan = 0;
  fdSendStats.scans++;
}
