/**
 * @module
 * How often code that keeps finding its work done at once (a progress engine's loop, a run of collectives
 * that complete in the caller's turn) hands the event loop a turn, and the turn itself. One value for the
 * shared-memory and UCX engines and for the collectives' LoopTurns; when to ask is theirs.
 */

/**
 * How often, at least, a run of work that completed at once lets the event loop turn, ms. A turn is a
 * `setTimeout(0)`, which Deno clamps to a millisecond and serves on its timer tick: 2.2 ms a turn here
 * (2026-12-07, 500 turns). Every 20 ms that was a tenth of a tight loop's time; every 100 ms it is 2%.
 * Cheaper macrotasks do not serve the loop: across a `MessageChannel` message no timer fired and no
 * socket was read, across node's `setImmediate` timers fired but sockets were not read.
 */
export const TURN_MS = 100;

/** A turn of the event loop: resolves after this thread's due timers and ready sockets have run. */
export function loopTurn(): Promise<void> {
  return new Promise<void>((resolve) => setTimeout(resolve, 0));
}
