/**
 * @module
 * The progress engine of one shm transport: a loop that advances every channel's queued work, polls
 * briefly when nothing moves, then sleeps on this rank's doorbell. The copying itself is the channels'.
 */

import type { Bells } from "./doorbell.ts";
import { loopTurn, TURN_MS } from "../loop_turn.ts";

/** What the engine drives: a channel's queued work. */
export interface Progressable {
  /** Whether work is queued. */
  readonly pending: boolean;
  /** Advances queued work; true if anything changed. */
  progress(): boolean;
  /** Fails the work if the peer is gone or nothing moved for too long. */
  check(now: number): void;
}

/** How the engine polls before it sleeps. */
export interface EngineOptions {
  /** Rounds of plain polling (with a microtask turn between them) before yielding the CPU. */
  spinPolls: number;
  /** Further rounds, each after `sched_yield()`, before sleeping on the doorbell. */
  yieldPolls: number;
  /** Longest sleep on the doorbell, in ms (the loop then rechecks its peers; default {@link SLEEP_MS}). */
  sleepMs?: number;
  /** How often queued work is checked for dead peers and timeouts, in ms (default 100). */
  checkMs?: number;
}

/** Longest doorbell sleep before the engine (or a transport's own wait) rechecks its peers, ms. */
export const SLEEP_MS = 50;
/** How often waiting operations look for dead peers and timeouts, ms. */
const CHECK_MS = 100;

/** Runs while any channel has queued work; stops by itself when all is done. */
export class Engine {
  readonly #items: Progressable[] = [];
  readonly #bells: Bells;
  readonly #me: number;
  readonly #yieldCpu: () => void;
  readonly #opts: EngineOptions;
  #running = false;
  #done: Promise<void> = Promise.resolve();
  #stopped = false;

  /** An engine for rank `me`, sleeping on its doorbell in `bells`. */
  constructor(bells: Bells, me: number, yieldCpu: () => void, opts: EngineOptions) {
    this.#bells = bells;
    this.#me = me;
    this.#yieldCpu = yieldCpu;
    this.#opts = opts;
  }

  /** Adds a channel to drive. */
  add(item: Progressable): void {
    this.#items.push(item);
  }

  /** Starts the loop unless it runs (call after queueing work that could not finish at once). */
  kick(): void {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    this.#done = this.#run();
  }

  /** Stops the loop and waits for it (and its pending futex wait) to end. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#bells.ring(this.#me);
    await this.#done;
  }

  async #run(): Promise<void> {
    const { spinPolls, yieldPolls, sleepMs = SLEEP_MS, checkMs = CHECK_MS } = this.#opts;
    let idle = 0;
    let lastCheck = performance.now();
    let lastMacrotask = lastCheck;
    try {
      while (!this.#stopped) {
        // Snapshot before looking: a ring after this point makes the sleep below return at once.
        const snap = this.#bells.snapshot();
        let moved = false;
        let busy = false;
        for (const it of this.#items) {
          if (!it.pending) continue;
          if (it.progress()) moved = true;
          if (it.pending) busy = true;
        }
        if (!busy) return;
        idle = moved ? 0 : idle + 1;
        const now = performance.now();
        if (now - lastCheck >= checkMs) {
          lastCheck = now;
          for (const it of this.#items) it.check(now);
        }
        if (idle <= spinPolls) {
          // Let the continuations of completed operations run (they often queue the next ones).
          // Microtask turns alone starve timers and I/O: hand the event loop a turn now and then.
          if (now - lastMacrotask >= TURN_MS) {
            await loopTurn();
            lastMacrotask = performance.now();
          } else await null;
        } else if (idle <= spinPolls + yieldPolls) {
          // More ranks than cores: give the peer we wait for a chance to run.
          this.#yieldCpu();
          await null;
        } else {
          await this.#bells.sleep(snap, sleepMs);
          lastMacrotask = performance.now();
          idle = 0;
        }
      }
    } finally {
      this.#running = false;
    }
  }
}
