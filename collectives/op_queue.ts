/**
 * @module
 * One group's op queue: the order collectives run in, each call's timeout (the watchdog) or deadline,
 * the monitor (metrics, flight recorder, hang reports), the group breaking on a failure, and the
 * destroyed and broken checks. Calls are held while an earlier GPU call waits for its route to load,
 * and one may start `after` a promise while keeping its place. What a call runs is the backends' job.
 */

import {
  ChoirError,
  CollectiveMismatchError,
  CollectiveTimeoutError,
  GroupDestroyedError,
  InvalidArgumentError,
  PeerLostError,
} from "../errors.ts";
import type { Call } from "./comm.ts";
import type { OpMonitor } from "./diagnostics/op_monitor.ts";
import { Watchdog } from "./diagnostics/watchdog.ts";
import { Work } from "./work.ts";

/** What runs one call once its turn has come; undefined when it already completed synchronously. */
export type Body = () => Promise<void> | undefined;

/** The queue of one group (see the module doc). */
export class OpQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #inflight = 0;
  /** Calls held behind a GPU call that waits for the GPU route to load (see {@link hold}). */
  #held = 0;
  /** Resolves once the last held call has started. */
  #started: Promise<void> = Promise.resolve();
  /** A held call is starting: the calls it makes start at once, in its place. */
  #starting = false;
  readonly #watchdog = new Watchdog();
  #broken: ChoirError | null = null;
  #destroyed = false;

  /**
   * @param rank this rank, named in errors.
   * @param monitor the group's monitor.
   * @param breakLinks closes the group's links with the error that broke it.
   */
  constructor(
    readonly rank: number,
    readonly monitor: OpMonitor,
    readonly breakLinks: (cause: ChoirError) => Promise<void>,
  ) {}

  /** The error that broke the group, if one did. */
  get broken(): ChoirError | null {
    return this.#broken;
  }

  /** Whether destroy() was called. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Whether a call made now may start at once (no call is held before it). */
  get open(): boolean {
    return this.#held === 0 || this.#starting;
  }

  /** Throws what a call on this group throws now: the error that broke it, or GroupDestroyedError. */
  check(op: string): void {
    if (this.#broken) throw this.#broken;
    this.checkAlive(op);
  }

  /** Throws GroupDestroyedError once the group is destroyed. */
  checkAlive(op: string): void {
    if (this.#destroyed) {
      throw new GroupDestroyedError("the process group was destroyed", { rank: this.rank, op });
    }
  }

  /** Marks the group broken by `err` (the first cause wins). */
  breakWith(err: ChoirError): void {
    this.#broken ??= err;
  }

  /** Starts an operation; with `{ async: true }` hands back its {@link Work} instead of the promise. */
  issue<T>(name: string, opts: { async?: boolean }, start: () => Promise<T>): Promise<T> | Work<T> {
    const p = this.open ? rejecting(start) : this.hold(start);
    return opts.async === true ? new Work(p, name, this.rank) : p;
  }

  /**
   * Starts `start` once the calls held before it have started and `ready` has resolved: a call made
   * while an earlier GPU call waits for the route. While `start` runs, calls it makes (the GPU route's
   * host collectives) start at once, in its place.
   */
  hold<T>(start: () => Promise<T>, ready?: Promise<void>): Promise<T> {
    this.#held++;
    const prev = this.#started;
    let started!: () => void;
    this.#started = new Promise<void>((resolve) => started = resolve);
    const go = () => {
      this.#held--;
      this.#starting = true;
      try {
        return rejecting(start);
      } finally {
        this.#starting = false;
        started();
      }
    };
    return (ready ? prev.then(() => ready) : prev).then(go, (e) => {
      this.#held--;
      started();
      throw e;
    });
  }

  /**
   * Runs `body` after the collectives queued before it, and not before `after` resolves (a staged GPU
   * chunk is on the host). With nothing in flight it runs here: a same-host collective whose peers
   * were on time is then complete when this returns.
   */
  order(after: Promise<void> | undefined, body: Body): Promise<void> {
    let p: Promise<void>;
    if (after) {
      p = (this.#inflight === 0 ? after : this.#tail.then(() => after)).then(body) as Promise<void>;
    } else if (this.#inflight === 0) {
      let r: Promise<void> | undefined;
      try {
        r = body();
      } catch (e) {
        return Promise.reject(e);
      }
      if (!r) return RESOLVED;
      p = r;
    } else {
      p = this.#tail.then(body, body) as Promise<void>;
    }
    return this.track(p);
  }

  /**
   * Whether {@link order} would run a call without `after` at once, in this very call (nothing in
   * flight before it): the same-host fast path then skips order()'s closure.
   */
  get idle(): boolean {
    return this.#inflight === 0;
  }

  /**
   * Keeps the order of a call that started at once while {@link idle} and is still running (`p`):
   * later calls queue behind it. Returns `p`.
   */
  track(p: Promise<void>): Promise<void> {
    this.#inflight++;
    const done = () => void this.#inflight--;
    this.#tail = p.then(done, done);
    return p;
  }

  /**
   * Runs `body` under the call's timeout (the watchdog) and the monitor. A failure other than a bad
   * argument breaks the group: its byte streams are in an unknown state.
   */
  async timed(call: Call, timeoutMs: number, body: () => Promise<void>): Promise<void> {
    const h = this.monitor.begin(call, false);
    try {
      await this.#watchdog.track(
        body(),
        timeoutMs,
        () =>
          new CollectiveTimeoutError(`${call.name} #${call.seq} did not complete`, timeoutMs, {
            rank: this.rank,
            op: call.name,
          }),
      );
      this.monitor.end(h, call);
    } catch (e) {
      const err = named(e, call, this.rank);
      if (!(err instanceof InvalidArgumentError)) {
        // The byte streams are in an unknown state: stop using them at once. Closing tells every
        // peer the cause in-band first (a rank whose link this closes then names the real cause,
        // even once the store is gone); the store then refines this rank's own report.
        this.#broken ??= err;
        await this.breakLinks(err);
        const settled = await this.monitor.failed(call, err);
        if (this.#broken === err) this.#broken = settled;
        this.monitor.end(h, call, settled);
        throw settled;
      }
      this.monitor.end(h, call, err);
      throw err;
    }
  }

  /**
   * Runs `body(a, b)`, which keeps its own deadline (the shared arena's waits), under the monitor; it
   * may complete synchronously (its arguments are passed through: no closure on the latency path). A failure other than a bad argument breaks the group: the other ranks'
   * arena counters are now out of step.
   */
  untimed<A, B>(
    call: Call,
    body: (a: A, b: B) => Promise<void> | undefined,
    a: A,
    b: B,
  ): Promise<void> | undefined {
    const h = this.monitor.begin(call, true);
    let r: Promise<void> | undefined;
    try {
      r = body(a, b);
    } catch (e) {
      this.monitor.end(h, call, e);
      this.#fail(e, call.name);
    }
    if (r === undefined) {
      this.monitor.end(h, call);
      return undefined;
    }
    return r.then(() => this.monitor.end(h, call), async (e) => {
      // The hang report wants this op still running in the recorder: end it afterwards.
      if (e instanceof ChoirError && !(e instanceof InvalidArgumentError)) {
        e = await this.monitor.failed(call, e);
      }
      this.monitor.end(h, call, e);
      this.#fail(e, call.name);
    });
  }

  #fail(e: unknown, op: string): never {
    if (!(e instanceof InvalidArgumentError)) {
      this.#broken = e instanceof ChoirError ? e : new PeerLostError(String(e), { rank: this.rank, op });
      void this.breakLinks(this.#broken);
    }
    throw e;
  }

  /** Marks the group destroyed, waits for the queued calls, and stops the watchdog and monitor. */
  async close(): Promise<void> {
    this.#destroyed = true;
    await this.#tail.catch(() => {});
    this.#watchdog.close();
    this.monitor.close();
  }

  /** Marks the group destroyed (later calls throw GroupDestroyedError); {@link close} finishes. */
  markDestroyed(): void {
    this.#destroyed = true;
  }
}

/** A failure as the caller sees it: typed, naming the op. */
function named(e: unknown, call: Call, rank: number): ChoirError {
  if (e instanceof CollectiveMismatchError && e.op === undefined) {
    // The transport that noticed knows the peer, not the operation: name it here.
    return new CollectiveMismatchError({ ...e.expected }, { ...e.received }, {
      rank,
      op: call.name,
      peer: e.peer,
      cause: e,
    });
  }
  if (e instanceof ChoirError) return e;
  return new PeerLostError(`${call.name} failed: ${(e as Error).message}`, { rank, op: call.name, cause: e });
}

/** Runs `f`, turning a synchronous throw (a bad argument) into a rejected promise. */
function rejecting<T>(f: () => Promise<T>): Promise<T> {
  try {
    return f();
  } catch (e) {
    return Promise.reject(e);
  }
}

const RESOLVED: Promise<void> = Promise.resolve();
