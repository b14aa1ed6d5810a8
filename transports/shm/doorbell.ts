/**
 * @module
 * Doorbells: one futex word per rank that peers bump after giving it data or space, and wake only
 * when it sleeps. Deciding when to sleep, and for how long, is left to the progress engine.
 */

import { FUTEX_WAIT, FUTEX_WAKE, type Libc } from "./libc.ts";
import type { Layout } from "./layout.ts";

const WAKE_ALL = 0x7fffffff;

/**
 * What channels and the progress engine need from doorbells, whatever rings them: futexes through
 * FFI between processes (here) or `Atomics.wait`/`notify` between Workers (transports/worker/).
 */
export interface Bells {
  /** Rings `rank` (wakes it if it sleeps). */
  ring(rank: number): void;
  /** This rank's doorbell value, taken before checking for work. */
  snapshot(): number;
  /** Sleeps until rung after `snapshot`, or `ms` pass, without blocking the event loop. */
  sleep(snapshot: number, ms: number): Promise<void>;
  /** Like `sleep`, blocking the thread (short naps only). */
  sleepSync(snapshot: number, ms: number): void;
}

/** The doorbells of every rank of a segment, used by one rank. */
export class Doorbells implements Bells {
  readonly #lib: Libc;
  readonly #words: Int32Array;
  readonly #bell: number[];
  readonly #sleeping: number[];
  readonly #ptr: Deno.PointerObject[];
  readonly #me: number;
  // One timespec each: the pool thread may read the async one while a sync nap fills its own.
  readonly #asyncTimeout = new BigInt64Array(2);
  readonly #syncTimeout = new BigInt64Array(2);

  /** Binds the doorbells of `layout` in the segment mapped at `base` (`words` views it), for rank `me`. */
  constructor(lib: Libc, layout: Layout, base: Deno.PointerObject, words: Int32Array, me: number) {
    this.#lib = lib;
    this.#words = words;
    this.#me = me;
    this.#bell = Array.from({ length: layout.size }, (_, r) => layout.bell(r) >> 2);
    this.#sleeping = Array.from({ length: layout.size }, (_, r) => layout.sleeping(r) >> 2);
    this.#ptr = Array.from(
      { length: layout.size },
      (_, r) => Deno.UnsafePointer.offset(base, layout.bell(r))!,
    );
  }

  /** Rings `rank`: bumps its word, and makes the wake syscall only if it is asleep. */
  ring(rank: number): void {
    Atomics.add(this.#words, this.#bell[rank], 1);
    // Both sides use sequentially consistent atomics: either the sleeper sees the bump and does not
    // sleep, or this load sees its flag and wakes it.
    if (Atomics.load(this.#words, this.#sleeping[rank]) !== 0) {
      this.#lib.fn.futex_wake(this.#lib.sysFutex, this.#ptr[rank], FUTEX_WAKE, WAKE_ALL, null);
    }
  }

  /** This rank's doorbell value: take it before checking for work, then pass it to {@link sleep}. */
  snapshot(): number {
    return Atomics.load(this.#words, this.#bell[this.#me]);
  }

  /**
   * Sleeps until a peer rings this rank after `snapshot` was taken, or `ms` pass. Returns at once if
   * it already rang. Spurious returns are possible; callers recheck their work. The wait runs on
   * Deno's blocking pool, so the event loop goes on meanwhile.
   */
  async sleep(snapshot: number, ms: number): Promise<void> {
    if (!this.#enter(snapshot, ms, this.#asyncTimeout)) return;
    try {
      // The result is ignored: EAGAIN (rang meanwhile), ETIMEDOUT and EINTR all mean "recheck", and
      // errno is not readable here (the call ran on another thread).
      await this.#lib.fn.futex_wait(
        this.#lib.sysFutex,
        this.#ptr[this.#me],
        FUTEX_WAIT,
        snapshot,
        this.#asyncTimeout,
      );
    } finally {
      Atomics.sub(this.#words, this.#sleeping[this.#me], 1);
    }
  }

  /** Like {@link sleep}, but blocks the calling thread: only for short naps (a few ms). */
  sleepSync(snapshot: number, ms: number): void {
    if (!this.#enter(snapshot, ms, this.#syncTimeout)) return;
    try {
      this.#lib.fn.futex_wait_sync(
        this.#lib.sysFutex,
        this.#ptr[this.#me],
        FUTEX_WAIT,
        snapshot,
        this.#syncTimeout,
      );
    } finally {
      Atomics.sub(this.#words, this.#sleeping[this.#me], 1);
    }
  }

  /** Announces a sleeper (a count: an async and a sync sleep may overlap); false if it already rang. */
  #enter(snapshot: number, ms: number, timeout: BigInt64Array): boolean {
    const me = this.#me;
    Atomics.add(this.#words, this.#sleeping[me], 1);
    if (Atomics.load(this.#words, this.#bell[me]) !== snapshot) {
      Atomics.sub(this.#words, this.#sleeping[me], 1);
      return false;
    }
    timeout[0] = BigInt(Math.floor(ms / 1000));
    timeout[1] = BigInt(Math.round((ms % 1000) * 1e6));
    return true;
  }
}
