/**
 * @module
 * Time and liveness of the elastic agent: the {@link Clock} every window, deadline and heartbeat is
 * measured on (monotonic; injectable in tests), and {@link HeartbeatWatch}, which judges a node by its
 * heartbeat counter moving within a window of that clock. No timestamp crosses nodes: each agent compares
 * counters it read itself against its own clock, so a wall-clock step (NTP) on any node changes nothing.
 * Reading the counters from the store is the caller's job.
 */

/** A source of milliseconds that only moves forward at a steady rate (not the wall clock). */
export interface Clock {
  /** Milliseconds since an arbitrary origin. */
  now(): number;
}

/** The default clock: `performance.now()`, which wall-clock steps do not move. */
export const monotonicClock: Clock = { now: () => performance.now() };

/**
 * Watches heartbeat counters: a node whose counter did not change for `timeoutMs` of the clock is silent.
 * A counter read for the first time starts its window.
 */
export class HeartbeatWatch<K = number> {
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #seen = new Map<K, { count: number; at: number; moved: boolean }>();

  /** A watch with a silence window of `timeoutMs`, measured on `clock`. */
  constructor(timeoutMs: number, clock: Clock = monotonicClock) {
    this.#timeoutMs = timeoutMs;
    this.#clock = clock;
  }

  /**
   * Records `count` read for `node`; returns how long it has stood still, in ms, once that is longer
   * than the window, else undefined.
   */
  observe(node: K, count: number): number | undefined {
    const now = this.#clock.now();
    const seen = this.#seen.get(node);
    if (seen === undefined || seen.count !== count) {
      this.#seen.set(node, { count, at: now, moved: seen !== undefined });
      return undefined;
    }
    const still = now - seen.at;
    return still > this.#timeoutMs ? still : undefined;
  }

  /** Whether the counter of `node` changed since it was first observed (the node is alive). */
  moved(node: K): boolean {
    return this.#seen.get(node)?.moved ?? false;
  }
}
