/**
 * @module
 * Doorbells for Worker ranks of one process: the same words as the shm transport's, woken with
 * `Atomics.notify` and slept on with `Atomics.wait` / `Atomics.waitAsync` instead of futexes through FFI.
 */

import type { Bells } from "../shm/doorbell.ts";
import type { Layout } from "../shm/layout.ts";

/** The doorbells of every rank of a Worker segment, used by one rank. */
export class AtomicsBells implements Bells {
  readonly #words: Int32Array;
  readonly #bell: number[];
  readonly #sleeping: number[];
  readonly #me: number;

  /** Binds the doorbells of `layout` in the shared words `words`, for rank `me`. */
  constructor(layout: Layout, words: Int32Array, me: number) {
    this.#words = words;
    this.#me = me;
    this.#bell = Array.from({ length: layout.size }, (_, r) => layout.bell(r) >> 2);
    this.#sleeping = Array.from({ length: layout.size }, (_, r) => layout.sleeping(r) >> 2);
  }

  /** Bumps `rank`'s word, and notifies only if it is asleep (a notify costs more than the check). */
  ring(rank: number): void {
    Atomics.add(this.#words, this.#bell[rank], 1);
    if (Atomics.load(this.#words, this.#sleeping[rank]) !== 0) Atomics.notify(this.#words, this.#bell[rank]);
  }

  /** This rank's doorbell value. */
  snapshot(): number {
    return Atomics.load(this.#words, this.#bell[this.#me]);
  }

  /** Sleeps until rung after `snapshot` or `ms` pass, without blocking the event loop. */
  async sleep(snapshot: number, ms: number): Promise<void> {
    const me = this.#me;
    Atomics.add(this.#words, this.#sleeping[me], 1);
    try {
      const r = Atomics.waitAsync(this.#words, this.#bell[me], snapshot, ms);
      if (r.async) await r.value;
    } finally {
      Atomics.sub(this.#words, this.#sleeping[me], 1);
    }
  }

  /** Like {@link sleep}, blocking the thread: short naps only. */
  sleepSync(snapshot: number, ms: number): void {
    const me = this.#me;
    Atomics.add(this.#words, this.#sleeping[me], 1);
    try {
      Atomics.wait(this.#words, this.#bell[me], snapshot, ms);
    } finally {
      Atomics.sub(this.#words, this.#sleeping[me], 1);
    }
  }
}
