/**
 * @module
 * Deadlines for in-flight operations with one timer per group instead of one per call: small
 * collectives run every few microseconds, and arming and clearing a timer each time is measurable.
 */

interface Entry {
  deadline: number;
  fail: () => void;
}

/** Rejects tracked promises whose deadline passes. The timer is unref'd: it never keeps a process alive. */
export class Watchdog {
  readonly #live = new Set<Entry>();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #timerAt = Infinity;

  /** Resolves or rejects like `p`, or rejects with `onTimeout()` once `ms` have passed. */
  track<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Entry = { deadline: performance.now() + ms, fail: () => reject(onTimeout()) };
      this.#live.add(entry);
      this.#arm(entry.deadline);
      p.then(
        (v) => {
          this.#live.delete(entry);
          resolve(v);
        },
        (e) => {
          this.#live.delete(entry);
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
    this.#live.clear();
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
    for (const e of this.#live) {
      if (e.deadline <= now) {
        this.#live.delete(e);
        e.fail();
      } else if (e.deadline < next) next = e.deadline;
    }
    if (next < Infinity) this.#arm(next);
  }
}
