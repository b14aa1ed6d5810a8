/**
 * @module
 * What a ProcessGroup records about its operations: the flight recorder (the last N ops, for hang
 * reports and /status), the metrics (/metrics), the hang-report protocol on a timeout, and the first
 * failure shared through the store. The group's op queue (`op_queue.ts`) calls {@link OpMonitor.begin}
 * when an op starts running (after its turn, not when queued), {@link OpMonitor.end} when it settles
 * and {@link OpMonitor.failed} when it fails; the pieces live in flight_recorder.ts, metrics.ts,
 * hang_protocol.ts and failure_cause.ts.
 */

import { type ChoirError, CollectiveTimeoutError } from "../../errors.ts";
import type { Store } from "../../transports/store/store.ts";
import type { Call } from "../comm.ts";
import { dtypeSize } from "../../dtype.ts";
import { settleCause } from "./failure_cause.ts";
import { FlightRecorder, type FlightRecorderSnapshot } from "./flight_recorder.ts";
import { answerHangRequests, type HangResponder, reportHang } from "./hang_protocol.ts";
import { Metrics } from "./metrics.ts";

/**
 * Ops on the latency path read the clock for one call in this many (each read costs about a fifth
 * of a whole tiny same-host collective); the others are counted untimed.
 */
const SAMPLE_EVERY = 64;

/** Settings of an {@link OpMonitor}. */
export interface OpMonitorOptions {
  /** This rank in the group. */
  rank: number;
  /** Ranks in the group. */
  size: number;
  /** Group id. */
  group: number;
  /** Flight recorder entries (0: no recorder). */
  capacity: number;
  /** The group's store (hang reports and the first failure need it). */
  store?: Store;
  /** Where the hang report goes (default: stderr). */
  print?: (text: string) => void;
  /** The job's verdict once known (see `ProcessGroupOptions.verdict`): a failure then reports it. */
  verdict?: () => ChoirError | null;
}

/** A group's recorder, metrics and failure reporting. */
export class OpMonitor {
  /** The counters and latency histograms. */
  readonly metrics: Metrics;
  readonly #rec: FlightRecorder | null;
  readonly #o: OpMonitorOptions;
  #responder: HangResponder | null = null;
  #sample = 0;

  /** Starts recording; with a store, also answers other ranks' hang-report requests. */
  constructor(o: OpMonitorOptions) {
    this.#o = o;
    this.metrics = new Metrics({ group: o.group });
    this.#rec = o.capacity > 0 ? new FlightRecorder({ capacity: o.capacity, group: o.group }) : null;
    const rec = this.#rec;
    if (o.store && rec && o.size > 1) {
      this.#responder = answerHangRequests({ store: o.store, rank: o.rank, tail: () => rec.tail() });
    }
  }

  /** Records the start of `call` and returns its handle; `fast` ops are timed one call in {@link SAMPLE_EVERY}. */
  begin(call: Call, fast: boolean): number {
    const rec = this.#rec;
    const timed = !fast || ++this.#sample >= SAMPLE_EVERY;
    if (timed && fast) this.#sample = 0;
    return rec ? rec.begin(call, bytesOf(call), timed ? performance.now() : NaN) : -1;
  }

  /** Records the end of the op of `handle` (failed when `error` is given) and counts it. */
  end(handle: number, call: Call, error?: unknown): void {
    const rec = this.#rec;
    let seconds = -1;
    if (rec) seconds = rec.end(handle, error);
    this.metrics.record(call.name, bytesOf(call), seconds, error !== undefined);
  }

  /**
   * Called once when an op fails for good (before the group closes its transport): shares the first
   * failure through the store and returns the error to report (see failure_cause.ts), or the job's
   * verdict when one is known; on a timeout, also runs the hang report, which the lowest waiting rank
   * prints.
   */
  async failed(call: Call, err: ChoirError): Promise<ChoirError> {
    const { store, rank, size, group } = this.#o;
    const verdict = this.#o.verdict?.();
    if (verdict) return await settleCause(store, rank, verdict);
    if (err instanceof CollectiveTimeoutError && store && this.#rec && size > 1) {
      // Bounded: a rank cut off from the store (its link is down) must still report its timeout.
      const report = await within(
        REPORT_LIMIT_MS,
        reportHang({ store, rank, size, seq: call.seq, tail: this.#rec.tail(), group }),
      );
      if (report?.reporter) (this.#o.print ?? ((t: string) => console.error(t)))(report.text);
    }
    return await settleCause(store, rank, err);
  }

  /** The flight recorder's operations in flight. */
  inFlight(): unknown[] {
    return this.#rec?.inFlight() ?? [];
  }

  /** The flight recorder's contents, or null without one. */
  snapshot(): FlightRecorderSnapshot | null {
    return this.#rec?.snapshot() ?? null;
  }

  /** Stops answering hang-report requests. */
  close(): void {
    this.#responder?.stop();
    this.#responder = null;
  }
}

/** The most a failing op waits for the hang report (its collection window is 3 s). */
const REPORT_LIMIT_MS = 5000;

/** `p`'s value, or undefined if it fails or takes longer than `ms`. */
function within<T>(ms: number, p: Promise<T>): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<undefined>((res) => timer = setTimeout(() => res(undefined), ms));
  return Promise.race([p.catch(() => undefined), limit]).finally(() => clearTimeout(timer));
}

function bytesOf(call: Call): number {
  return call.count > 0 ? call.count * dtypeSize(call.dtype) : 0;
}
