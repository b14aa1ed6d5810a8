/**
 * @module
 * Finds the descriptor of the socket behind a `Deno.TcpConn` (Deno exposes none), for the libc calls
 * that skip a trip through Deno's event loop: the store's writes (http/fd_send.ts) and the TCP channel's
 * nonblocking send/recv (tcp/socket_fd.ts). A lookup asks descriptors for their local and peer IPv4
 * addresses (`getsockname`/`getpeername`): first near the last one this thread found (a new socket takes
 * the lowest free number, so sockets made one after another sit close together), then in a map of the
 * thread's sockets by port that a scan of every descriptor refreshes, at most as often as the misses pay
 * for it. IPv4 only: an IPv6 address has several spellings, and matching the port alone could pick
 * another connection's socket, so IPv6 connections keep Deno's calls. Linux only; without FFI
 * permission or libc, nothing is found.
 */

/** The libc socket calls bound. */
const SYMBOLS = {
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  sched_yield: { parameters: [], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
} as const;

/** libc's socket calls, as bound by {@link socketLibc}. */
export type SocketLibc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** `MSG_DONTWAIT | MSG_NOSIGNAL`: never block, never raise SIGPIPE on a closed peer. */
export const SOCKET_FLAGS = 0x40 | 0x4000;
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

let libc: SocketLibc | null | undefined;
/** Where this thread found its last socket: the next one is most likely just above it. */
let hint = -1;
/** This thread's IPv4 sockets by local and peer port, as of the last full scan (checked before use). */
let byPorts = new Map<number, number>();
/** Open descriptors at the last full scan (-1: none yet) and lookups missed since. */
let openAtScan = -1;
let missedSinceScan = 0;

/** libc, loaded once per thread; null where FFI is not granted or this is not Linux. */
export function socketLibc(): SocketLibc | null {
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
export const socketLookupStats: { found: number; missed: number; probes: number; scans: number } = {
  found: 0,
  missed: 0,
  probes: 0,
  scans: 0,
};

/** An IPv4 address: its four bytes and port. */
export interface Ipv4 {
  /** The four address bytes. */
  a: number[];
  /** The port. */
  port: number;
}

/** The four address bytes and port of an IPv4 `Deno.NetAddr`, or null for anything else. */
export function ipv4(addr: Deno.Addr): Ipv4 | null {
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
  l: SocketLibc,
  fd: number,
  local: Ipv4,
  peer: Ipv4,
): boolean {
  socketLookupStats.probes++;
  // The peer first: every connection of a server shares its local address.
  saLen[0] = sa.byteLength;
  if (l.getpeername(fd, sa, saLenBytes) !== 0 || !same(sa, peer)) return false;
  saLen[0] = sa.byteLength;
  return l.getsockname(fd, sa, saLenBytes) === 0 && same(sa, local);
}

/**
 * How hard {@link lookUpSocket} looks: `accepted`, a socket just accepted (wide above the last one found;
 * a full scan only for the thread's first); `lazy`, at a connection's first writes (near the last one,
 * then the map, a full scan only once the misses pay for it); `must`, once per connection that keeps
 * the answer for its life (as `lazy`, then a full scan on a miss).
 */
export type LookupMode = "accepted" | "lazy" | "must";

/** The descriptor of the socket with these addresses, or -1 (see the module comment for the order). */
export function lookUpSocket(l: SocketLibc, local: Ipv4, peer: Ipv4, mode: LookupMode): number {
  const accepted = mode === "accepted";
  let fd = hint < 0 ? -1 : nearHint(l, hint, local, peer, accepted ? ABOVE_AT_ACCEPT : ABOVE);
  if (fd < 0 && !accepted) fd = fromMap(l, local, peer);
  // Accepted sockets scan only with no hint yet (the thread's first).
  const scan = mode === "must" ||
    (accepted ? hint < 0 : openAtScan < 0 || (missedSinceScan + 1) * PROBES_PER_MISS >= openAtScan);
  if (fd < 0 && scan) {
    scanAll(l);
    fd = fromMap(l, local, peer);
  }
  if (fd < 0) {
    socketLookupStats.missed++;
    missedSinceScan++;
    return -1;
  }
  hint = fd;
  socketLookupStats.found++;
  return fd;
}

function nearHint(l: SocketLibc, at: number, local: Ipv4, peer: Ipv4, above: number): number {
  // Upwards first: with no descriptor freed meanwhile, a new socket is numbered above the last one.
  for (let d = 1; d <= above; d++) if (isConn(l, at + d, local, peer)) return at + d;
  for (let fd = at; fd >= 0 && fd >= at - BELOW; fd--) if (isConn(l, fd, local, peer)) return fd;
  return -1;
}

function fromMap(l: SocketLibc, local: Ipv4, peer: Ipv4): number {
  const fd = byPorts.get(local.port * 65536 + peer.port);
  return fd !== undefined && isConn(l, fd, local, peer) ? fd : -1;
}

/** Maps every IPv4 socket of the process by its ports (other threads' too: each use checks first). */
function scanAll(l: SocketLibc): void {
  const map = new Map<number, number>();
  let open = 0;
  for (let fd = 0, closed = 0; closed < CLOSED_RUN; fd++) {
    socketLookupStats.probes++;
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
  socketLookupStats.scans++;
}

/**
 * Lengthens the accept queue of `listener` to `backlog` (libc `listen` again on its socket; the kernel
 * caps it at net.core.somaxconn). Deno listens with a shorter queue: a 1,024-rank start-up overflowed the
 * store's by about 160 connections a run here, each of whose SYN the kernel resends only a second later.
 * One scan of the process's descriptors: for a server's one listener, not for each rank's. False when
 * the socket is not found (no FFI permission, not Linux, not IPv4) or `listen` fails.
 */
export function widenBacklog(listener: Deno.TcpListener, backlog: number): boolean {
  const l = socketLibc();
  const local = ipv4(listener.addr);
  if (l === null || local === null) return false;
  for (let fd = 0, closed = 0; closed < CLOSED_RUN; fd++) {
    saLen[0] = sa.byteLength;
    if (l.getsockname(fd, sa, saLenBytes) !== 0) {
      closed++;
      continue;
    }
    closed = 0;
    if (!same(sa, local)) continue;
    saLen[0] = sa.byteLength;
    if (l.getpeername(fd, sa, saLenBytes) === 0) continue; // a connection accepted on it, not the listener
    return l.listen(fd, backlog) === 0;
  }
  return false;
}
