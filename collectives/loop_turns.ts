/**
 * @module
 * A run of collectives that complete in the caller's turn (the tiny shared-memory path, the TCP
 * exchange that finds its reply while polling) never yields to the event loop by itself, which would
 * starve this thread's timers and sockets: key watches, and the store server that rank 0 of a small
 * job runs on its main thread (larger jobs and heartbeats have threads of their own). Both backends
 * ask {@link LoopTurns} after each such call; about every {@link TURN_MS} it hands back a macrotask to
 * wait for.
 */

import { loopTurn, TURN_MS } from "../transports/loop_turn.ts";

/** How often, at least, a run of calls that completed at once lets the event loop turn, ms. */
export { TURN_MS };

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
    return loopTurn();
  }
}
