/**
 * @module
 * Spin-then-block progress for the TCP channels' sockets. A read or write first tries a nonblocking
 * libc call (socket_fd.ts); when that would block and spinning is allowed, the socket joins one
 * polling loop shared by every socket of this isolate, which retries every pending read and write
 * (both directions of an exchange go on at once, as a rank polling in C would) until each has moved
 * some bytes, and hands whatever is still pending to Deno's own `read`/`write` (a sleep until the
 * socket is ready) once nothing has moved for the spin time. On this machine a rank woken by a
 * socket starts 30-100 us after the data came, and a rank that polls a microsecond or two after.
 *
 * While it spins, the loop holds the event loop (it yields only to promise callbacks when something
 * moved), so timers wait at most one spin. A socket whose bytes went to Deno is left to Deno until
 * that call returns, so that the two never move bytes of one direction at once.
 */

import type { SocketFd } from "./socket_fd.ts";

/** One pending read or write: the bytes it may move and who waits for the count. */
interface Want {
  buf: Uint8Array;
  resolve: (n: number | null) => void;
  reject: (e: unknown) => void;
}

/** The largest read or write that polls where ranks share cores (larger ones sleep at once). */
const YIELDING_POLL_MAX_BYTES = 256 * 1024;

/** Sockets with a pending read or write in the polling loop. */
const active = new Set<SocketPoller>();
/** Whether the polling loop is running. */
let driving = false;

/** Reads and writes on one socket, nonblocking calls first, polled for a while, then Deno's. */
export class SocketPoller {
  readonly #fd: SocketFd;
  readonly #conn: Deno.Conn;
  readonly #spinMs: number;
  /** Whether a poll that finds nothing gives the core away first (ranks sharing cores). */
  readonly yields: boolean;
  #read: Want | null = null;
  #write: Want | null = null;
  #closed = false;

  /**
   * Polls `fd` (the socket of `conn`) for up to `spinUs` microseconds without progress (0: one try);
   * with `yields`, each round of polls that moved nothing first gives the core away (`sched_yield`), so
   * that a rank sharing it, perhaps the one this socket waits for, can run.
   */
  constructor(fd: SocketFd, conn: Deno.Conn, spinUs: number, yields = false) {
    this.#fd = fd;
    this.#conn = conn;
    this.#spinMs = spinUs / 1000;
    this.yields = yields;
  }

  /** The socket's nonblocking calls (for a caller that polls on its own, as an exchange does). */
  get fd(): SocketFd {
    return this.#fd;
  }

  /** Microseconds this socket's waits spin. */
  get spinUs(): number {
    return this.#spinMs * 1000;
  }

  /** Reads some bytes into `buf` (not empty): how many, or null when the peer closed. */
  read(buf: Uint8Array): Promise<number | null> {
    if (!this.#closed) {
      const n = this.#fd.tryRecv(buf);
      if (n !== 0) return Promise.resolve(n < 0 ? null : n);
      if (this.#polls(buf)) return this.#want(buf, true);
    }
    return this.#conn.read(buf);
  }

  /** Writes some bytes of `buf` (not empty): how many. */
  write(buf: Uint8Array): Promise<number> {
    if (!this.#closed) {
      const n = this.#fd.trySend(buf);
      if (n > 0) return Promise.resolve(n);
      if (this.#polls(buf)) return this.#want(buf, false) as Promise<number>;
    }
    return this.#conn.write(buf);
  }

  /**
   * Whether a call on `buf` that would block polls. Where ranks share cores, only up to
   * {@link YIELDING_POLL_MAX_BYTES}: a long transfer keeps both cores in the kernel's copies, and
   * polling beside it made it slower (4 ranks on 2 cores, 16 MiB allreduce: 34.9-36.7 against
   * 32.1-33.9 ms, 2026-12-08).
   */
  #polls(buf: Uint8Array): boolean {
    return this.#spinMs > 0 && (!this.yields || buf.byteLength <= YIELDING_POLL_MAX_BYTES);
  }

  /**
   * Stops using the descriptor (its number may soon belong to another file): a pending read ends as
   * if the peer closed, a pending write fails.
   */
  close(): void {
    this.#closed = true;
    this.#settle(new Error("connection closed"));
  }

  #want(buf: Uint8Array, read: boolean): Promise<number | null> {
    const { promise, resolve, reject } = Promise.withResolvers<number | null>();
    if (read) this.#read = { buf, resolve, reject };
    else this.#write = { buf, resolve, reject };
    active.add(this);
    // Started after the caller's synchronous code, so that an exchange posts both its calls first.
    if (!driving) {
      driving = true;
      queueMicrotask(drive);
    }
    return promise;
  }

  /** Retries the pending calls once: whether any moved bytes. Settles and leaves the loop when done. */
  progress(): boolean {
    if (this.#closed) return false;
    let moved = false;
    try {
      const w = this.#write;
      if (w) {
        const n = this.#fd.trySend(w.buf);
        if (n > 0) {
          this.#write = null;
          w.resolve(n);
          moved = true;
        }
      }
      const r = this.#read;
      if (r) {
        const n = this.#fd.tryRecv(r.buf);
        if (n !== 0) {
          this.#read = null;
          r.resolve(n < 0 ? null : n);
          moved = true;
        }
      }
    } catch (e) {
      this.#settle(e);
      return true;
    }
    if (!this.#read && !this.#write) active.delete(this);
    return moved;
  }

  /** Hands the pending calls to Deno (a sleep until the socket is ready) and leaves the loop. */
  sleep(): void {
    const r = this.#read;
    const w = this.#write;
    this.#read = this.#write = null;
    active.delete(this);
    if (r) later(() => this.#conn.read(r.buf), r);
    if (w) later(() => this.#conn.write(w.buf), w);
  }

  /** Ends the pending calls: a read as closed, a write with `e` (a read too, when `e` is not a close). */
  #settle(e: unknown): void {
    const r = this.#read;
    const w = this.#write;
    this.#read = this.#write = null;
    active.delete(this);
    if (r) this.#closed ? r.resolve(null) : r.reject(e);
    if (w) w.reject(e);
  }
}

/** Settles `want` with what `call` gives, a synchronous throw included. */
function later(call: () => Promise<number | null>, want: Want): void {
  try {
    call().then(want.resolve, want.reject);
  } catch (e) {
    want.reject(e);
  }
}

/**
 * The polling loop: retries every pending call until none is left; yields to promise callbacks
 * after each round that moved bytes (the waiting code may post its next call), gives the core away
 * after each round that moved nothing where sockets ask for it, and sends every socket to sleep once
 * nothing has moved for the longest spin.
 */
async function drive(): Promise<void> {
  try {
    let idleSince = performance.now();
    while (active.size > 0) {
      let moved = false;
      let spinMs = 0;
      for (const s of active) {
        if (s.progress()) moved = true;
        spinMs = Math.max(spinMs, s.spinUs / 1000);
      }
      if (moved) {
        // Let the callers run: a few microtask turns, no trip through the event loop.
        await Promise.resolve();
        await Promise.resolve();
        idleSince = performance.now();
        continue;
      }
      // Nothing moved: where ranks share cores, let one that may be the peer run (once per round).
      for (const s of active) {
        if (s.yields) {
          s.fd.yieldCore();
          break;
        }
      }
      if (performance.now() - idleSince > spinMs) {
        for (const s of [...active]) s.sleep();
      }
    }
  } finally {
    driving = false;
  }
}
