/**
 * @module
 * The progress engine of one UCX worker: it drives `ucp_worker_progress` while requests are pending,
 * polls briefly, then sleeps on the worker's event fd (armed, with a timeout) so an idle rank frees its
 * core; with nothing pending, one shared timer keeps idle workers answering their peers. Request
 * bookkeeping lives here; what a completion means is the caller's callback.
 */

import { UCS_ERR_BUSY, UCS_INPROGRESS, UCS_OK } from "./status.ts";
import type { UcxWorker } from "./worker.ts";
import { loopTurn, TURN_MS } from "../loop_turn.ts";

/** One UCX request in flight and the buffers UCX reads or writes until it completes. */
export interface Pending {
  /** The request handle. */
  readonly request: Deno.PointerObject;
  /** For receives: where `ucp_tag_recv_request_test` writes the tag and length. */
  readonly info: Uint8Array | null;
  /** The buffer UCX reads or writes (held so that GC cannot free it before completion). */
  readonly keep: Uint8Array;
  /** The peer rank the request talks to. */
  readonly peer: number;
  /** Called once with the final status and, for receives, the received length. */
  readonly complete: (status: number, length: number) => void;
  /** Called instead of `complete` when the peer is given up on; the request stays tracked. */
  readonly abandon: (e: Error) => void;
}

/** How the engine polls before it sleeps. */
export interface UcxEngineOptions {
  /** Microseconds of polling with a microtask turn between polls, once nothing moves, before yielding. */
  spinUs: number;
  /** Further microseconds of polls, each after `sched_yield()`, before sleeping on the event fd. */
  yieldUs: number;
  /** Longest sleep on the event fd, ms (then the engine rechecks peers). */
  sleepMs: number;
  /** How often `onCheck` runs while requests are pending, ms. */
  checkMs: number;
  /**
   * While no request is pending, progress the worker this often (ms) from one timer shared by every
   * engine of the process, which does not keep the process alive. Unset: an idle worker is left alone.
   */
  idleMs?: number;
}

const POLLIN = 1;

/**
 * Drives one worker's pending requests to completion, and (with `idleMs`) keeps an idle worker
 * progressed so that it answers its peers.
 */
export class UcxEngine {
  /** Engines with `idleMs` whose loop is not running: the shared timer progresses their workers. */
  static readonly #idle = new Set<UcxEngine>();
  static #idleTimer: ReturnType<typeof setInterval> | undefined;

  readonly #w: UcxWorker;
  readonly #opts: UcxEngineOptions;
  readonly #pending = new Set<Pending>();
  /** Requests whose caller was already failed; held until UCX completes them (or close frees them). */
  readonly #abandoned = new Set<Pending>();
  readonly #background = new Set<Pending>();
  readonly #pollfd = new Int32Array(2);
  readonly #yieldCpu: () => void;
  /** Runs every `checkMs` while requests are pending (peer liveness). */
  onCheck: (now: number) => void = () => {};
  #running = false;
  #sleeping = false;
  #stopped = false;
  #done: Promise<void> = Promise.resolve();

  /** An engine for worker `w`; `yieldCpu` gives the core away for a moment (sched_yield). */
  constructor(w: UcxWorker, yieldCpu: () => void, opts: UcxEngineOptions) {
    this.#w = w;
    this.#yieldCpu = yieldCpu;
    this.#opts = opts;
    this.#pollfd[0] = w.efd;
    this.#setIdle(true);
  }

  /**
   * Issue 19: a worker with nothing pending was never progressed, yet its peers may need it to be.
   * UCX answers connection requests, wire-up messages, flushes and closes of remote endpoints, and
   * sends the rest of a message whose send already completed, only inside ucp_worker_progress. A rank
   * busy in another group (or in a newer group's connect) left an older group's worker silent, and a
   * peer closing its endpoints to it waited out the close bound (2 s, with its JS thread blocked).
   */
  #setIdle(on: boolean): void {
    const every = this.#opts.idleMs;
    if (!every) return;
    const idle = UcxEngine.#idle;
    if (on && !this.#stopped) idle.add(this);
    else idle.delete(this);
    if (idle.size > 0 && UcxEngine.#idleTimer === undefined) {
      const timer = setInterval(() => UcxEngine.#tick(), every);
      Deno.unrefTimer(timer as unknown as number);
      UcxEngine.#idleTimer = timer;
    } else if (idle.size === 0 && UcxEngine.#idleTimer !== undefined) {
      clearInterval(UcxEngine.#idleTimer);
      UcxEngine.#idleTimer = undefined;
    }
  }

  /** One turn of the shared idle timer: progress every idle worker until it has nothing to do. */
  static #tick(): void {
    for (const e of UcxEngine.#idle) {
      for (let i = 0; i < 64 && e.#w.progress() !== 0; i++);
      if (e.#abandoned.size) e.#reap();
      if (e.#background.size) e.#poll(undefined, e.#background);
    }
  }

  /**
   * Keeps `p` (a receive that may wait for the group's whole life: the in-band abort listener) checked
   * on every turn of the loop and of the idle timer, without counting as work: the loop still sleeps
   * and stops as if it were not there. `p.complete` runs when it completes; {@link drain} frees it.
   */
  watch(p: Pending): void {
    this.#background.add(p);
  }

  /** Number of requests in flight. */
  get size(): number {
    return this.#pending.size;
  }

  /** Tracks a request until it completes, and makes sure the loop runs. */
  track(p: Pending): void {
    this.#pending.add(p);
    if (this.#sleeping) this.#w.signal();
    if (!this.#running && !this.#stopped) {
      this.#running = true;
      this.#setIdle(false);
      this.#done = this.#run();
    }
  }

  /**
   * Fails every unfinished request of `peer` (or of everyone) with `e` at once; those UCX has already
   * finished complete as usual. Receives are cancelled; all stay tracked, buffers held, until UCX
   * completes them, since a matched receive or a send to a dead peer may never complete on its own.
   */
  abandon(e: Error, peer?: number): void {
    // A peer's error is reported inside ucp_worker_progress, possibly in the same call that finished
    // requests to or from it, and the engine tests requests only after progress returns.
    this.#poll(peer);
    for (const p of this.#pending) {
      if (peer !== undefined && p.peer !== peer) continue;
      this.#pending.delete(p);
      this.#abandoned.add(p);
      if (p.info !== null) this.#w.lib.ucp.ucp_request_cancel(this.#w.handle, p.request);
      p.abandon(e);
    }
  }

  /** Stops the loop, waiting for an in-flight event-fd sleep to return. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#setIdle(false);
    if (this.#sleeping) this.#w.signal();
    await this.#done;
  }

  /**
   * After `stop()`: fails every request with `e`, progresses until UCX has finished with them all or
   * `boundMs` passed, and frees them (UCX releases unfinished ones when they finish). Returns the
   * buffers of the requests that never finished: hold them until the worker is destroyed.
   */
  drain(e: Error, boundMs: number): Uint8Array[] {
    for (const p of this.#background) {
      this.#abandoned.add(p);
      this.#w.lib.ucp.ucp_request_cancel(this.#w.handle, p.request);
    }
    this.#background.clear();
    this.abandon(e);
    const until = performance.now() + boundMs;
    while (this.#abandoned.size && performance.now() < until) {
      this.#w.progress();
      this.#reap();
    }
    const kept: Uint8Array[] = [];
    for (const p of this.#abandoned) {
      kept.push(p.keep);
      this.#w.lib.ucp.ucp_request_free(p.request);
    }
    this.#abandoned.clear();
    return kept;
  }

  /** Frees abandoned requests that UCX has finished with. */
  #reap(): void {
    const { ucp } = this.#w.lib;
    for (const p of this.#abandoned) {
      const st = p.info !== null
        ? ucp.ucp_tag_recv_request_test(p.request, p.info)
        : ucp.ucp_request_check_status(p.request);
      if (st === UCS_INPROGRESS) continue;
      this.#abandoned.delete(p);
      ucp.ucp_request_free(p.request);
    }
  }

  /** Checks every pending request (of `peer` only, if given) once; returns whether any completed. */
  #poll(peer?: number, set: Set<Pending> = this.#pending): boolean {
    const { ucp } = this.#w.lib;
    let moved = false;
    for (const p of set) {
      if (peer !== undefined && p.peer !== peer) continue;
      const st = p.info !== null
        ? ucp.ucp_tag_recv_request_test(p.request, p.info)
        : ucp.ucp_request_check_status(p.request);
      if (st === UCS_INPROGRESS) continue;
      moved = true;
      set.delete(p);
      const length = p.info !== null && st === UCS_OK
        ? Number(
          new DataView(p.info.buffer, p.info.byteOffset).getBigUint64(
            this.#w.layout.tagRecvInfo.length,
            true,
          ),
        )
        : 0;
      ucp.ucp_request_free(p.request);
      p.complete(st, length);
    }
    return moved;
  }

  async #run(): Promise<void> {
    const { spinUs, yieldUs, sleepMs, checkMs } = this.#opts;
    const spinMs = spinUs / 1000;
    const yieldMs = (spinUs + yieldUs) / 1000;
    let idleSince = performance.now();
    let lastCheck = performance.now();
    let lastMacrotask = lastCheck;
    try {
      while (!this.#stopped && this.#pending.size) {
        let events = 0;
        for (let i = 0; i < 64 && this.#w.progress() !== 0; i++) events++;
        const moved = this.#poll();
        if (this.#abandoned.size) this.#reap();
        if (this.#background.size) this.#poll(undefined, this.#background);
        if (!this.#pending.size) return;
        const now = performance.now();
        if (moved || events) idleSince = now;
        const idle = now - idleSince;
        if (now - lastCheck >= checkMs) {
          lastCheck = now;
          this.onCheck(now);
        }
        if (idle <= spinMs) {
          // Microtask turns alone starve timers and I/O: hand the event loop a turn now and then.
          if (now - lastMacrotask >= TURN_MS) {
            await loopTurn();
            lastMacrotask = performance.now();
          } else await null;
        } else if (idle <= yieldMs) {
          this.#yieldCpu();
          await null;
        } else {
          // Sleep only when UCX agrees there is nothing left to progress (arm returns UCS_OK).
          const st = this.#w.arm();
          if (st === UCS_ERR_BUSY) continue;
          if (st === UCS_OK) {
            this.#sleeping = true;
            this.#pollfd[1] = POLLIN;
            try {
              await this.#w.lib.libc.poll(this.#pollfd, 1n, sleepMs);
            } finally {
              this.#sleeping = false;
            }
          } else await loopTurn();
          lastMacrotask = idleSince = performance.now();
        }
      }
    } finally {
      this.#running = false;
      // A request tracked while the loop was finishing its last turn still needs a loop.
      if (this.#pending.size && !this.#stopped) {
        this.#running = true;
        this.#done = this.#run();
      } else this.#setIdle(true);
    }
  }
}
