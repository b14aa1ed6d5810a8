/**
 * @module
 * The flight recorder: a fixed ring of the last N operations of one process group (seq, op, sizes,
 * state, timings), cheap enough to record every call. Reading it (tail, in-flight, snapshot) is for
 * hang reports (hang_report.ts) and the status endpoint; it never talks to other ranks itself.
 *
 * Integration (`op_monitor.ts`, driven by the op queue): one recorder per group, none when
 * `CHOIR_FLIGHT_RECORDER` is 0 (see {@link recorderCapacity}); `begin` when an operation starts running
 * (after its turn in the queue, not when it is queued), `end` when it settles, on success or failure
 * (also on the synchronous arena path that returns no promise). `end` returns the duration in seconds
 * for `Metrics.record`.
 */

import { InvalidArgumentError } from "../../errors.ts";

/** Entries a recorder keeps when no capacity is configured. */
export const DEFAULT_FLIGHT_RECORDER_SIZE = 256;

/**
 * The recorder capacity for a configured `CHOIR_FLIGHT_RECORDER` value: the default when unset,
 * 0 (meaning "do not record") for 0 or a negative value.
 */
export function recorderCapacity(configured: number | undefined): number {
  if (configured === undefined) return DEFAULT_FLIGHT_RECORDER_SIZE;
  return configured > 0 ? configured : 0;
}

/** What the recorder needs to know of an operation; the ProcessGroup's `Call` has this shape. */
export interface OpDescriptor {
  /** The operation's name (`allReduce`, `send`, ...). */
  readonly name: string;
  /** Its sequence number (per group for collectives, per peer for send/recv). */
  readonly seq: number;
  /** Element type. */
  readonly dtype: string;
  /** Element count. */
  readonly count: number;
  /** Root rank (rooted collectives), tag (send/recv) or -1. */
  readonly root: number;
  /** Reduce op of a reducing collective (`sum`, ...). */
  readonly op?: string;
}

/** Where an operation is: still running, finished, or failed. */
export type EntryState = "running" | "done" | "failed";

/** One recorded operation, as {@link FlightRecorder.tail} returns it (a copy; JSON-ready). */
export interface FlightEntry {
  /** Group id. */
  group: number;
  /** Sequence number. */
  seq: number;
  /** Operation name (`allReduce`, ...). */
  op: string;
  /** Reduce op, for reducing collectives. */
  reduceOp?: string;
  /** Element type. */
  dtype: string;
  /** Element count. */
  count: number;
  /** Root rank, p2p tag, or -1. */
  root: number;
  /** Bytes of the tensor passed in. */
  bytes: number;
  /** The algorithm that ran it, when the caller said. */
  algorithm?: string;
  /** Running, done or failed. */
  state: EntryState;
  /** Start, in microseconds since the Unix epoch (0 when the recorder did not read the clock). */
  startUs: number;
  /** End, in microseconds since the Unix epoch, once finished and timed. */
  endUs?: number;
  /** The error's message, when it failed. */
  error?: string;
}

/** A JSON-ready picture of a recorder. */
export interface FlightRecorderSnapshot {
  /** Group id. */
  group: number;
  /** Entries the ring holds at most. */
  capacity: number;
  /** Operations begun since the recorder was created (older ones than the ring holds are gone). */
  recorded: number;
  /** The entries still held, oldest first. */
  entries: FlightEntry[];
}

/** Options of a {@link FlightRecorder}. */
export interface FlightRecorderOptions {
  /** Entries kept (default {@link DEFAULT_FLIGHT_RECORDER_SIZE}); a positive integer. */
  capacity?: number;
  /** Group id stamped on every entry (default 0). */
  group?: number;
  /**
   * Whether `begin`/`end` read `performance.now()` when no time is passed to them (default true).
   * Without it, only calls that pass their own times are timed.
   */
  clock?: boolean;
}

const RUNNING = 0;
const DONE = 1;
const FAILED = 2;
const STATES: readonly EntryState[] = ["running", "done", "failed"];

/** One ring slot, made on first use and then rewritten in place by each `begin` that lands on it. */
class Slot {
  id = -1;
  seq = 0;
  op = "";
  reduceOp = "";
  dtype = "";
  count = 0;
  root = -1;
  bytes = 0;
  algorithm = "";
  state = RUNNING;
  startMs = NaN;
  endMs = NaN;
  error = "";
}

/**
 * A ring buffer of the last `capacity` operations. `begin` and `end` write into slots made on first
 * use (a group that runs few operations never holds `capacity` of them: at 1,024 simulated ranks in 4
 * processes the preallocated rings were 65,536 objects a process), then reused without allocation, at
 * most one clock read each; a handle is the operation's index since creation, so
 * `end` on an operation the ring has already overwritten is ignored.
 */
export class FlightRecorder {
  /** Entries kept. */
  readonly capacity: number;
  /** Group id stamped on entries. */
  readonly group: number;
  readonly #slots: Slot[];
  readonly #clock: boolean;
  #next = 0;

  /** Creates an empty recorder; throws InvalidArgumentError for a capacity that is not a positive integer. */
  constructor(opts: FlightRecorderOptions = {}) {
    const capacity = opts.capacity ?? DEFAULT_FLIGHT_RECORDER_SIZE;
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new InvalidArgumentError(`flight recorder capacity must be a positive integer, got ${capacity}`, {
        op: "FlightRecorder",
      });
    }
    this.capacity = capacity;
    this.group = opts.group ?? 0;
    this.#clock = opts.clock ?? true;
    this.#slots = [];
  }

  /** Operations begun since creation. */
  get recorded(): number {
    return this.#next;
  }

  /**
   * Records the start of `call`, `bytes` long, at `nowMs` (a `performance.now()` value; read here when
   * omitted and the clock is on). Returns the handle for {@link end} and {@link setAlgorithm}.
   */
  begin(call: OpDescriptor, bytes: number, nowMs?: number): number {
    const id = this.#next++;
    const s = this.#slots[id % this.capacity] ??= new Slot();
    s.id = id;
    s.seq = call.seq;
    s.op = call.name;
    s.reduceOp = call.op ?? "";
    s.dtype = call.dtype;
    s.count = call.count;
    s.root = call.root;
    s.bytes = bytes;
    s.algorithm = "";
    s.state = RUNNING;
    s.startMs = nowMs ?? (this.#clock ? performance.now() : NaN);
    s.endMs = NaN;
    s.error = "";
    return id;
  }

  /** Notes the algorithm running the operation of `handle`. */
  setAlgorithm(handle: number, algorithm: string): void {
    const s = this.#slots[handle % this.capacity];
    if (s?.id === handle) s.algorithm = algorithm;
  }

  /**
   * Marks the operation of `handle` done, or failed when `error` is given, at `nowMs` (read here when
   * omitted and the clock is on). Returns its duration in seconds, or -1 when it is unknown (untimed,
   * already ended, or overwritten by newer entries).
   */
  end(handle: number, error?: unknown, nowMs?: number): number {
    const s = this.#slots[handle % this.capacity];
    if (s === undefined || s.id !== handle || s.state !== RUNNING) return -1;
    if (error === undefined) s.state = DONE;
    else {
      s.state = FAILED;
      s.error = error instanceof Error ? error.message : String(error);
    }
    // An untimed start (NaN) stays untimed: no clock read for it here either.
    s.endMs = nowMs ?? (this.#clock && !Number.isNaN(s.startMs) ? performance.now() : NaN);
    const d = (s.endMs - s.startMs) / 1000;
    return d >= 0 ? d : -1;
  }

  /** The last `n` entries (default: all held), oldest first. */
  tail(n: number = this.capacity): FlightEntry[] {
    const held = Math.min(this.#next, this.capacity);
    const take = Math.max(0, Math.min(Math.floor(n), held));
    const out: FlightEntry[] = [];
    for (let id = this.#next - take; id < this.#next; id++) {
      out.push(this.#entry(this.#slots[id % this.capacity]));
    }
    return out;
  }

  /** The entries still running, oldest first. */
  inFlight(): FlightEntry[] {
    return this.tail().filter((e) => e.state === "running");
  }

  /** Everything held, with the ring's bookkeeping. */
  snapshot(): FlightRecorderSnapshot {
    return { group: this.group, capacity: this.capacity, recorded: this.#next, entries: this.tail() };
  }

  #entry(s: Slot): FlightEntry {
    const e: FlightEntry = {
      group: this.group,
      seq: s.seq,
      op: s.op,
      dtype: s.dtype,
      count: s.count,
      root: s.root,
      bytes: s.bytes,
      state: STATES[s.state],
      startUs: epochUs(s.startMs),
    };
    if (s.reduceOp !== "") e.reduceOp = s.reduceOp;
    if (s.algorithm !== "") e.algorithm = s.algorithm;
    if (!Number.isNaN(s.endMs)) e.endUs = epochUs(s.endMs);
    if (s.state === FAILED) e.error = s.error;
    return e;
  }
}

/** A `performance.now()` value as microseconds since the Unix epoch; 0 for an untimed NaN. */
function epochUs(ms: number): number {
  return Number.isNaN(ms) ? 0 : Math.round((performance.timeOrigin + ms) * 1000);
}
