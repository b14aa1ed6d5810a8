/**
 * @module
 * Deadlines for in-flight operations with one timer per group instead of one per call: small
 * collectives run every few microseconds, and arming and clearing a timer each time is measurable.
 */

interface Entry {
  deadline: number;
  fail: () => void;
  settled: boolean;
}

/** Rejects tracked promises whose deadline passes. The timer is unref'd: it never keeps a process alive. */
export class Watchdog {
  // An array with settled flags, compacted now and then: a Set's add/delete per call showed up
  // as a tenth of the time of a small collective.
  #live: Entry[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #timerAt = Infinity;

  /** Resolves or rejects like `p`, or rejects with `onTimeout()` once `ms` have passed. */
  track<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Entry = {
        deadline: performance.now() + ms,
        fail: () => reject(onTimeout()),
        settled: false,
      };
      if (this.#live.length >= 64) this.#live = this.#live.filter((e) => !e.settled);
      this.#live.push(entry);
      this.#arm(entry.deadline);
      p.then(
        (v) => {
          entry.settled = true;
          resolve(v);
        },
        (e) => {
          entry.settled = true;
          reject(e);
        },
      );
    });
  }

  /** Stops the timer; tracked promises are left to settle on their own. */
  close(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
    this.#live = [];
  }

  #arm(at: number): void {
    if (this.#timer !== null && this.#timerAt <= at) return; // an earlier check is already due
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#check(), Math.max(0, at - performance.now()));
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  #check(): void {
    this.#timer = null;
    this.#timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    const still: Entry[] = [];
    for (const e of this.#live) {
      if (e.settled) continue;
      if (e.deadline <= now) {
        e.settled = true;
        e.fail();
      } else {
        still.push(e);
        if (e.deadline < next) next = e.deadline;
      }
    }
    this.#live = still;
    if (next < Infinity) this.#arm(next);
  }
}
