/**
 * @module
 * The arena same-host collectives run in: a region of the group's shared segment with one control
 * line per rank (monotonic counters), double-buffered call slots (call number, fingerprint and a tiny
 * payload in the same first cache line), and chunk buffers. Waiting spins, then yields, then naps on a futex without blocking the event loop for long.
 * Mapping the memory is left to the transport; the algorithms live in allreduce_shm.ts and friends.
 */

import { CollectiveMismatchError, CollectiveTimeoutError, PeerLostError } from "../../errors.ts";
import type { ArenaHost } from "../../transports/arena_host.ts";

/**
 * Control words of each rank's line (the arena call number of a call slot lives in the slot itself,
 * next to its fingerprint and payload: a peer fetches one cache line per tiny call, not two).
 */
export const W = {
  /** Chunks this rank has copied in. */
  in: 2,
  /** Chunks whose slice this rank has reduced. */
  red: 3,
  /** Chunks this rank has copied out. */
  done: 4,
} as const;

const LINE = 64;
const WORDS = LINE / 4;
/**
 * Bytes of a call slot (two per rank, by call parity): the call number and a 24-byte fingerprint,
 * then a payload of up to 4 KiB + 32 bytes, which travels in one handoff (no chunk pipeline and its waits). Measured with 2
 * ranks against the chunk path (2026-11-27): allreduce 128 B 4.3 -> 1.5 us, 2 KiB 5.2 -> 3.6 us;
 * broadcast 128 B 5.9 -> 1.1 us; allgather 2 KiB 3.3 -> 2.1 us.
 */
const SLOT = 4160;
/**
 * The slot's header: the arena call number (i32, published last), 4 bytes spare, then the fingerprint
 * (kind u16, op u8, dtype u8, root i32, count f64, alloc i32, offset u32); the payload after it is
 * 8-byte aligned.
 */
const HEAD_BYTES = 32;
/** Byte offset of the fingerprint in the header. */
const FP_AT = 8;
/** The largest payload that travels inside the call slot. */
export const SMALL_PAYLOAD = SLOT - HEAD_BYTES;

/** What identifies an arena collective; every rank must present the same one. */
export interface Fingerprint {
  /** Collective kind code. */
  kind: number;
  /** Reduce op code (255 for none). */
  op: number;
  /** dtype code. */
  dtype: number;
  /** Element count. */
  count: number;
  /** Root, or -1. */
  root: number;
  /**
   * The symmetric allocation (`pg.alloc`) an allReduce runs in place on, by its number (the same on
   * every rank), or -1 for ordinary memory (copied through the arena).
   */
  alloc: number;
  /** Byte offset of the tensor in this rank's array of {@link alloc} (0 for ordinary memory). */
  offset: number;
}
const SPINS = 40;
const YIELDS = 20;
/** Blocking naps of at most 1 ms before a wait turns asynchronous. */
const SYNC_NAPS = 4;
/**
 * How long a rank that has a core to itself spins before it yields and naps, microseconds, at most.
 * The spin adapts (see `Arena.waitFor`): a spin that ran out means the peer was not running (another
 * process had its core), and spinning on only delays it; the next waits spin a quarter as long, down
 * to {@link SPIN_MIN_US}, and a wait that a spin ended doubles it again. Measured (2026-12-07, 2
 * ranks, a third process busy on one of the 2 cores): 8 B and 4 KiB allReduce took about 440 us a call
 * with the fixed spin, 19-28 us with the adaptive one.
 */
const SPIN_US = 200;
/** The shortest adaptive spin, microseconds. */
const SPIN_MIN_US = 2;
/**
 * Once a spin has run out on a machine with cores to spare, the spin goes on (up to {@link SPIN_ON_US} in
 * all) in steps of this many microseconds, asking between steps whether a thread now waits for a core.
 */
const SPIN_CHECK_US = 20;
/**
 * How long a spin may go on, in all, while no thread waits for a core, microseconds (or the adaptive spin,
 * when that is longer: waits of mid-size calls keep spinning as long as they did).
 */
const SPIN_ON_US = 60;
/** After a wait found the machine crowded, how long the next waits take that for granted, ms. */
const CROWDED_MS = 1;

/** A typed array small enough for a call slot (any element type). */
export type TinyArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | Uint32Array
  | Uint16Array
  | Uint8Array
  | Int8Array
  | BigInt64Array;

/** Per-call facts for error messages and deadlines. */
export interface WaitContext {
  /** Operation name. */
  op: string;
  /**
   * Absolute deadline, `performance.now()` milliseconds; 0 until the first wait that has to nap
   * sets it (reading the clock costs more than a whole tiny collective whose peers are on time).
   */
  deadline: number;
  /** The timeout the deadline came from, ms (for the message). */
  timeoutMs: number;
  /** This rank's global rank, for messages. */
  globalRank: number;
  /** Global rank of each arena rank, for messages. */
  globalOf: readonly number[];
  /**
   * Names a fingerprint's fields for a mismatch message; `other` is the fingerprint it is compared
   * with (fields that only one kind of call has appear when either side has them).
   */
  describe(fp: Fingerprint, other: Fingerprint): Record<string, number | string>;
  /** Set by the group's `abort()`: a wait that naps throws it. */
  aborted?: Error | null;
}

/** A rank's view of the arena. */
export class Arena {
  /** This rank within the host. */
  readonly rank: number;
  /** Ranks on the host. */
  readonly size: number;
  /** Bytes of each chunk buffer. */
  readonly chunkBytes: number;
  /** Arena collectives so far (the same on every rank while they agree). */
  calls = 0;
  /** Chunk counter (the same on every rank). */
  chunks = 0;
  readonly #host: ArenaHost;
  readonly #ctl: Int32Array;
  /** The call slots as words: slot i's call number is word i * SLOT / 4. */
  readonly #slotWords: Int32Array;
  readonly #smallOff: number;
  readonly #chunkOff: number;
  readonly #spin: boolean;
  /** The current spin of a wait, microseconds (adapts between SPIN_MIN_US and SPIN_US). */
  #spinUs = SPIN_US;
  /** Until when (`performance.now()`) waits take the machine as crowded without asking again. */
  #crowdedUntil = 0;
  /** Fingerprint and payload views of every call slot (rank * 2 + parity), made once. */
  readonly #fp: DataView[] = [];
  /**
   * The same fingerprints as words (kind|op<<16|dtype<<24, root, count as f64 at word 2, alloc,
   * offset): the latency path writes and compares words, not DataView fields.
   */
  readonly #fpI32: Int32Array[] = [];
  readonly #fpF64: Float64Array[] = [];
  readonly #payload: Uint8Array[] = [];
  /** Typed views of every call slot's payload, by element type (made on first use). */
  readonly #typed = new Map<unknown, ArrayLike<unknown>[]>();
  #lastCtor: unknown = null;
  #lastViews: ArrayLike<unknown>[] = [];
  /** Views of every call slot's first `n` elements, for the last `n` asked per element type ({@link slotExact}). */
  readonly #exact = new Map<unknown, { n: number; views: ArrayLike<unknown>[] }>();
  /** Private room for a copy of every rank's call-slot payload ({@link staged}), and its typed views. */
  readonly #stage: ArrayBuffer;
  readonly #stagedViews = new Map<unknown, ArrayLike<unknown>[]>();

  /** Lays the arena out over `host`'s region, with chunk buffers of at most `maxChunkBytes`. */
  constructor(host: ArenaHost, maxChunkBytes = 1 << 20) {
    this.#host = host;
    this.rank = host.rank;
    this.size = host.size;
    const n = host.size;
    this.#ctl = new Int32Array(host.buffer, host.offset, n * WORDS);
    this.#smallOff = host.offset + n * LINE;
    this.#chunkOff = this.#smallOff + n * 2 * SLOT;
    this.#slotWords = new Int32Array(host.buffer, this.#smallOff, (n * 2 * SLOT) / 4);
    this.#spin = n <= (navigator.hardwareConcurrency || 1);
    this.#stage = new ArrayBuffer(n * SLOT);
    for (let i = 0; i < 2 * n; i++) {
      const at = this.#smallOff + i * SLOT + FP_AT;
      this.#fp.push(new DataView(host.buffer, at, 24));
      this.#fpI32.push(new Int32Array(host.buffer, at, 6));
      this.#fpF64.push(new Float64Array(host.buffer, at, 3));
      this.#payload.push(new Uint8Array(host.buffer, this.#smallOff + i * SLOT + HEAD_BYTES, SMALL_PAYLOAD));
    }
    const room = host.bytes - (this.#chunkOff - host.offset);
    // One chunk buffer per rank, double-buffered; whole cache lines, so every element type stays
    // aligned in every buffer.
    const fit = Math.min(maxChunkBytes, Math.floor(room / (2 * n)));
    this.chunkBytes = Math.max(LINE, Math.floor(fit / LINE) * LINE);
  }

  /** Byte offset (in the segment buffer) of the tiny payload in rank `r`'s call slot of `parity`. */
  payload(r: number, parity: number): number {
    return this.#smallOff + (r * 2 + parity) * SLOT + HEAD_BYTES;
  }

  /**
   * Starts an arena collective: writes this rank's fingerprint (and `tiny`, a payload of at most
   * {@link SMALL_PAYLOAD} bytes) into its call slot, publishes it, waits for every peer's, and
   * checks that all agree, so a mismatched collective fails on every rank at its first step (having
   * written nothing but this rank's call slot).
   * Slots alternate by call parity: a rank can be at most one call ahead of any peer.
   * Returns the call's parity.
   */
  begin(fp: Fingerprint, ctx: WaitContext, tiny?: TinyArray): number | Promise<number> {
    const k = ++this.calls;
    const p = k & 1;
    // The DataView layout of #compare's message, written as words (little-endian hosts only, as
    // every typed view of the segment assumes).
    const w = this.#fpI32[this.rank * 2 + p];
    w[0] = fp.kind | (fp.op << 16) | (fp.dtype << 24);
    w[1] = fp.root;
    this.#fpF64[this.rank * 2 + p][1] = fp.count;
    w[4] = fp.alloc;
    w[5] = fp.offset;
    if (tiny) {
      // Element by element into a cached view: no allocation on the latency path; a bulk copy for
      // the longer ones.
      const slot = this.slotView(tiny, this.rank, p);
      if (tiny.length <= 64) { for (let i = 0; i < tiny.length; i++) slot[i] = tiny[i]; }
      else slot.set(tiny as never);
    }
    // The call number last: a peer that sees it sees the fingerprint and payload written before it.
    Atomics.store(this.#slotWords, ((this.rank * 2 + p) * SLOT) >> 2, k);
    this.#ring();
    return this.#checkPeers(fp, ctx, p, k, 0);
  }

  /**
   * Waits for the peers from `from` on and compares their fingerprints. Stays synchronous (returns
   * the parity) while every peer is on time; the first wait that has to nap makes it asynchronous.
   */
  #checkPeers(
    fp: Fingerprint,
    ctx: WaitContext,
    p: number,
    k: number,
    from: number,
  ): number | Promise<number> {
    for (let q = from; q < this.size; q++) {
      if (q === this.rank) continue;
      const wait = this.#waitOn(this.#slotWords, ((q * 2 + p) * SLOT) >> 2, k, q, ctx);
      if (wait) return wait.then(() => this.#checkPeers(fp, ctx, p, k, q));
      this.#compare(fp, ctx, p, q);
    }
    return p;
  }

  #compare(fp: Fingerprint, ctx: WaitContext, p: number, q: number): void {
    const w = this.#fpI32[q * 2 + p];
    if (
      w[0] !== (fp.kind | (fp.op << 16) | (fp.dtype << 24)) || w[1] !== fp.root ||
      this.#fpF64[q * 2 + p][1] !== fp.count || w[4] !== fp.alloc || w[5] !== (fp.offset | 0)
    ) {
      const pv = this.#fp[q * 2 + p];
      const got: Fingerprint = {
        kind: pv.getUint16(0, true),
        op: pv.getUint8(2),
        dtype: pv.getUint8(3),
        root: pv.getInt32(4, true),
        count: pv.getFloat64(8, true),
        alloc: pv.getInt32(16, true),
        offset: pv.getUint32(20, true),
      };
      throw new CollectiveMismatchError(ctx.describe(fp, got), ctx.describe(got, fp), {
        rank: ctx.globalRank,
        op: ctx.op,
        peer: ctx.globalOf[q],
      });
    }
  }

  /**
   * The payload of rank `r`'s call slot of `parity` as an array of `like`'s element type, covering
   * the whole payload (its first `like.length` elements are the tiny input). Cached.
   */
  slotView<T extends TinyArray>(like: T, r: number, parity: number): T {
    const ctor = like.constructor as new (b: ArrayBuffer, off: number, len: number) => T;
    // The last element type asked is kept aside: a loop of calls on one tensor skips the map.
    if (ctor === this.#lastCtor) return this.#lastViews[r * 2 + parity] as T;
    let views = this.#typed.get(ctor);
    if (!views) {
      const len = Math.floor(SMALL_PAYLOAD / like.BYTES_PER_ELEMENT);
      views = Array.from(
        { length: 2 * this.size },
        (_, i) => new ctor(this.#host.buffer, this.payload(i >> 1, i & 1), len),
      );
      this.#typed.set(ctor, views);
    }
    this.#lastCtor = ctor;
    this.#lastViews = views;
    return views[r * 2 + parity] as T;
  }

  /**
   * The first `like.length` elements of rank `r`'s call-slot payload of `parity`, typed as `like`:
   * what a kernel reads straight from the peer's slot. The views of the last length per element type
   * are kept (a loop of calls on one tensor allocates none).
   */
  slotExact<T extends TinyArray>(like: T, r: number, parity: number): T {
    const ctor = like.constructor;
    const n = like.length;
    let e = this.#exact.get(ctor);
    if (e === undefined || e.n !== n) {
      const mk = ctor as new (b: ArrayBuffer, off: number, len: number) => T;
      e = {
        n,
        views: Array.from(
          { length: 2 * this.size },
          (_, i) => new mk(this.#host.buffer, this.payload(i >> 1, i & 1), n),
        ),
      };
      this.#exact.set(ctor, e);
    }
    return e.views[r * 2 + parity] as T;
  }

  /**
   * A private copy of the first `like.byteLength` bytes of rank `r`'s call-slot payload of `parity`,
   * as an array of `like`'s element type (its first `like.length` elements are the copy). One bulk
   * copy brings a peer's cache lines over faster than element-by-element reads of the shared slot
   * (measured, 2 ranks, 4 KiB: about 1 vs 2 us), and the reduction then reads local memory.
   */
  staged<T extends TinyArray>(like: T, r: number, parity: number): T {
    const ctor = like.constructor as new (b: ArrayBuffer, off: number, len: number) => T;
    let views = this.#stagedViews.get(ctor);
    if (!views) {
      const len = Math.floor(SMALL_PAYLOAD / like.BYTES_PER_ELEMENT);
      views = Array.from({ length: this.size }, (_, q) => new ctor(this.#stage, q * SLOT, len));
      this.#stagedViews.set(ctor, views);
    }
    const bytes = like.byteLength;
    new Uint8Array(this.#stage, r * SLOT, bytes).set(
      new Uint8Array(this.#host.buffer, this.payload(r, parity), bytes),
    );
    return views[r] as T;
  }

  /** Byte offset of rank `r`'s input chunk buffer of `parity`. */
  inBuf(r: number, parity: number): number {
    return this.#chunkOff + (r * 2 + parity) * this.chunkBytes;
  }

  /** Elements of `elemBytes` bytes that fit one chunk buffer (at least 1). */
  chunkElems(elemBytes: number): number {
    return Math.max(1, Math.floor(this.chunkBytes / elemBytes));
  }

  /** {@link begin} without a tiny payload, for callers that are asynchronous anyway. */
  async handshake(fp: Fingerprint, ctx: WaitContext): Promise<void> {
    const p = this.begin(fp, ctx);
    if (typeof p !== "number") await p;
  }

  /** The segment buffer. */
  get buffer(): ArrayBuffer {
    return this.#host.buffer;
  }

  /** Publishes `value` in this rank's word `w` and wakes sleeping peers. */
  publish(w: number, value: number): void {
    Atomics.store(this.#ctl, this.rank * WORDS + w, value);
    this.#ring();
  }

  /** Wakes every peer that sleeps. */
  #ring(): void {
    for (let q = 0; q < this.size; q++) if (q !== this.rank) this.#host.ring(q);
  }

  /** Resolves once every rank's word `w` has reached `target` (wrap-safe comparison). */
  async waitAll(w: number, target: number, ctx: WaitContext): Promise<void> {
    for (let q = 0; q < this.size; q++) {
      if (q === this.rank) continue;
      const wait = this.waitFor(q, w, target, ctx);
      if (wait) await wait;
    }
  }

  /**
   * Returns once rank `q`'s word `w` has reached `target`. While ranks have a core each it spins for
   * up to {@link SPIN_US} (a futex nap costs tens of microseconds to wake from here), less after spins
   * that ran out (the peer was off its core); with more ranks than cores it yields the core instead,
   * since the rank it waits for may need it. Then it naps.
   */
  waitFor(q: number, w: number, target: number, ctx: WaitContext): Promise<void> | undefined {
    return this.#waitOn(this.#ctl, q * WORDS + w, target, q, ctx);
  }

  /** {@link waitFor} on word `idx` of `ctl` (a control word or a call slot's number), written by rank `q`. */
  #waitOn(
    ctl: Int32Array,
    idx: number,
    target: number,
    q: number,
    ctx: WaitContext,
  ): Promise<void> | undefined {
    if (((Atomics.load(ctl, idx) - target) | 0) >= 0) return undefined;
    // A peer that is a step behind usually arrives within a few hundred polls: no clock needed.
    for (let i = 0; i < SPINS; i++) if (((Atomics.load(ctl, idx) - target) | 0) >= 0) return undefined;
    if (this.#spin) {
      const start = performance.now();
      let until = start + this.#spinUs / 1000;
      while (true) {
        do {
          for (let i = 0; i < 64; i++) {
            if (((Atomics.load(ctl, idx) - target) | 0) >= 0) {
              if (this.#spinUs < SPIN_US) this.#spinUs = Math.min(SPIN_US, this.#spinUs * 2);
              return undefined;
            }
          }
        } while (performance.now() < until);
        // The spin ran out. If no runnable thread lacks a core, the peer is running and only late:
        // spinning on costs nobody, and yielding would make this rank late for it in turn.
        const now = performance.now();
        if (now - start >= Math.max(SPIN_ON_US, this.#spinUs) / 1000 || now < this.#crowdedUntil) break;
        if (this.#host.crowded?.() !== false) {
          // Crowded now is likely crowded for a while: skip the system call for the next waits.
          this.#crowdedUntil = now + CROWDED_MS;
          break;
        }
        until = now + SPIN_CHECK_US / 1000;
      }
      this.#spinUs = Math.max(SPIN_MIN_US, this.#spinUs / 4);
    }
    for (let i = 0; i < YIELDS; i++) {
      this.#host.yieldCore();
      if (((Atomics.load(ctl, idx) - target) | 0) >= 0) return undefined;
    }
    // Short naps that block this thread wake fastest (a futex wake reaches a blocked thread in a few
    // microseconds, an async nap on the blocking pool in tens); cap them so that the event loop, which
    // may serve the store to a late peer, is never held for long.
    for (let i = 0; i < SYNC_NAPS; i++) {
      const snap = this.#host.snapshot();
      if (((Atomics.load(ctl, idx) - target) | 0) >= 0) return undefined;
      this.#host.sleepSync(snap, 1);
      if (((Atomics.load(ctl, idx) - target) | 0) >= 0) return undefined;
    }
    return this.#sleepUntil(ctl, idx, target, q, ctx);
  }

  /**
   * The slow wait: naps on this rank's doorbell without blocking the event loop (this process may
   * host the store server that a late peer still needs), checking the deadline and the peer's life.
   */
  async #sleepUntil(
    ctl: Int32Array,
    idx: number,
    target: number,
    q: number,
    ctx: WaitContext,
  ): Promise<void> {
    let lastCheck = performance.now();
    // The spins and short naps before this took at most a few milliseconds of the timeout.
    if (ctx.deadline === 0) ctx.deadline = lastCheck + ctx.timeoutMs;
    while (true) {
      const snap = this.#host.snapshot();
      if (((Atomics.load(ctl, idx) - target) | 0) >= 0) return;
      await this.#host.sleep(snap, 2);
      if (((Atomics.load(ctl, idx) - target) | 0) >= 0) return;
      if (ctx.aborted) throw ctx.aborted;
      const now = performance.now();
      if (now > ctx.deadline) {
        throw new CollectiveTimeoutError(
          `${ctx.op}: waited for rank ${ctx.globalOf[q]} (shared memory)`,
          ctx.timeoutMs,
          { rank: ctx.globalRank, op: ctx.op, peer: ctx.globalOf[q] },
        );
      }
      if (now - lastCheck > 50) {
        lastCheck = now;
        if (!this.#host.alive(q)) {
          throw this.#host.causeOf?.(q, ctx.op) ??
            new PeerLostError(`rank ${ctx.globalOf[q]} exited during ${ctx.op}`, {
              rank: ctx.globalRank,
              op: ctx.op,
              peer: ctx.globalOf[q],
            });
        }
      }
    }
  }
}
