/**
 * @module
 * A run of collectives that complete in the caller's turn (the tiny shared-memory path, the TCP
 * exchange that finds its reply while polling) never yields to the event loop by itself, which would
 * starve this thread's timers and sockets: key watches, and the store server that rank 0 of a small
 * job runs on its main thread (larger jobs and heartbeats have threads of their own). Both backends
 * ask {@link LoopTurns} after each such call; about every {@link TURN_MS} it hands back a macrotask to
 * wait for.
 */

/**
 * How often, at least, a run of calls that completed at once lets the event loop turn, ms. A turn is a
 * `setTimeout(0)`, which Deno clamps to a millisecond and serves on its timer tick: 2.2 ms a turn here
 * (2026-12-07, 500 turns). Every 20 ms that was a tenth of a tight loop's time; every 100 ms it is 2%.
 * Cheaper macrotasks do not serve the loop: across a `MessageChannel` message no timer fired and no
 * socket was read, across node's `setImmediate` timers fired but sockets were not read.
 */
export const TURN_MS = 100;
/** Calls between two reads of the clock (a read costs about a fifth of a tiny same-host call). */
const CLOCK_EVERY = 64;

/** One group's clock for handing the event loop a turn during calls that complete at once. */
export class LoopTurns {
  #sinceClock = 0;
  #lastTurn = performance.now();

  /** Undefined, or (about every {@link TURN_MS} of calls) a macrotask the caller should wait for. */
  next(): Promise<void> | undefined {
    if (++this.#sinceClock < CLOCK_EVERY) return undefined;
    this.#sinceClock = 0;
    const now = performance.now();
    if (now - this.#lastTurn < TURN_MS) return undefined;
    this.#lastTurn = now;
    return new Promise<void>((resolve) => setTimeout(resolve, 0));
  }
}
