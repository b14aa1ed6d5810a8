/**
 * @module
 * The store protocol of hang reports: a rank whose collective timed out opens a report round, every
 * rank publishes its flight-recorder tail under it, and the lowest rank that is collecting gathers
 * what arrived within a wait and prints the report (hang_report.ts builds it). Idle ranks answer
 * through the process's one background watch of the store (`onKeySet`, key_watcher.ts), so a rank that
 * skipped a collective still shows where it is, and an idle group sends the store nothing.
 *
 * Keys, under the group's store prefix: `hang/request` (the round: the seq of the first timed-out
 * op, set once per group), `hang/<round>/tail/<rank>` (JSON {@link PublishedTail}),
 * `hang/<round>/reporter` (the rank that prints).
 *
 * Integration (`op_monitor.ts`; needs the group's store): the monitor starts the responder when the
 * group is made and stops it on close; when the op queue reports a CollectiveTimeoutError
 * (`OpMonitor.failed`), it runs {@link reportHang} before the error is rethrown and prints the report
 * on the reporting rank. Awaiting it delays the error by at most `waitMs`; a store failure only loses
 * the report.
 */

import { StoreTimeoutError } from "../../errors.ts";
import type { Store } from "../../transports/store/store.ts";
import { onKeySet } from "../../transports/store/key_watcher.ts";
import type { FlightEntry } from "./flight_recorder.ts";
import { analyzeHang, type HangReport } from "./hang_report.ts";

/** What a rank publishes for a round. */
export interface PublishedTail {
  /** The publishing rank. */
  rank: number;
  /** Whether it waits to print the report (a rank that timed out) or only answers (an idle rank). */
  collecting: boolean;
  /** Its flight-recorder tail, oldest first. */
  entries: FlightEntry[];
}

/** A report as one rank gathered it. */
export interface CollectedReport extends HangReport {
  /** The round it belongs to. */
  round: number;
  /** Whether this rank is the one that prints it (exactly one collecting rank is). */
  reporter: boolean;
}

const REQUEST_KEY = "hang/request";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const tailKey = (round: number, rank: number) => `hang/${round}/tail/${rank}`;

/**
 * Opens a report round for the op `seq` that timed out, or joins the one already open; returns the
 * round. Only the first request of a group counts, so ranks that time out at different ops meet.
 */
export async function requestReport(store: Store, seq: number): Promise<number> {
  const value = await store.compareSet(REQUEST_KEY, "", String(seq));
  const round = Number(decoder.decode(value));
  return Number.isSafeInteger(round) ? round : seq;
}

/**
 * Publishes `rank`'s tail for `round`. A collecting rank's tail replaces whatever is there; an
 * answering one (`collecting: false`) is written only if the rank has published nothing yet.
 */
export async function publishTail(
  store: Store,
  rank: number,
  round: number,
  tail: readonly FlightEntry[],
  collecting = true,
): Promise<void> {
  const body: PublishedTail = { rank, collecting, entries: [...tail] };
  const value = encoder.encode(JSON.stringify(body));
  if (collecting) await store.set(tailKey(round, rank), value);
  else await store.compareSet(tailKey(round, rank), "", value);
}

/** Options of {@link collectReport} and {@link reportHang}. */
export interface CollectOptions {
  /** Group id named in the report. */
  group?: number;
  /** The report's time, in microseconds since the Unix epoch (default: now). */
  nowUs?: number;
}

/**
 * Waits up to `waitMs` for the tails of all `size` ranks in `round`, then builds the report from
 * those that arrived (the rest are "no answer"). The lowest collecting rank claims the printing;
 * `reporter` tells this rank whether it won. Store failures propagate (StoreError).
 */
export async function collectReport(
  store: Store,
  rank: number,
  size: number,
  round: number,
  waitMs: number,
  opts: CollectOptions = {},
): Promise<CollectedReport> {
  const keys = Array.from({ length: size }, (_, r) => tailKey(round, r));
  try {
    await store.wait(keys, waitMs);
  } catch (err) {
    if (!(err instanceof StoreTimeoutError)) throw err;
  }
  // Two requests, whatever the group's size: which tails are there, then all of them.
  const there = await store.watch(keys, 0);
  const values = await store.multiGet(there, 0);
  const byKey = new Map(there.map((k, i) => [k, values[i]]));
  const published = keys.map((k, r) => {
    const v = byKey.get(k);
    return v === undefined ? undefined : parseTail(v, r);
  });
  const report = analyzeHang(published.map((p) => p?.entries), opts);
  const lowest = published.find((p) => p?.collecting)?.rank;
  let reporter = false;
  if (lowest === undefined || lowest === rank) {
    const claim = await store.compareSet(`hang/${round}/reporter`, "", String(rank));
    reporter = decoder.decode(claim) === String(rank);
  }
  return { ...report, round, reporter };
}

/** Options of {@link reportHang}. */
export interface ReportHangOptions extends CollectOptions {
  /** The group's store. */
  store: Store;
  /** This rank. */
  rank: number;
  /** Ranks in the group. */
  size: number;
  /** Sequence number of the op that timed out here. */
  seq: number;
  /** This rank's flight-recorder tail. */
  tail: readonly FlightEntry[];
  /**
   * How long to wait for the other ranks' tails, in ms (default 3000: time for idle ranks' watches to
   * wake and answer, however busy their event loops are).
   */
  waitMs?: number;
}

/** Default wait of {@link reportHang} for the other ranks' tails, in ms. */
const DEFAULT_REPORT_WAIT_MS = 3_000;

/** What a rank whose collective timed out calls: request a round, publish, collect. */
export async function reportHang(opts: ReportHangOptions): Promise<CollectedReport> {
  const round = await requestReport(opts.store, opts.seq);
  await publishTail(opts.store, opts.rank, round, opts.tail, true);
  return await collectReport(
    opts.store,
    opts.rank,
    opts.size,
    round,
    opts.waitMs ?? DEFAULT_REPORT_WAIT_MS,
    opts,
  );
}

/** Options of {@link answerHangRequests}. */
export interface AnswerOptions {
  /** The group's store. */
  store: Store;
  /** This rank. */
  rank: number;
  /** Returns this rank's current flight-recorder tail. */
  tail: () => readonly FlightEntry[];
  /**
   * Unused: the store tells the process's background watch when a round opens, so nothing polls. Kept
   * so that existing callers compile.
   */
  intervalMs?: number;
  /** Called with a store error that ended the watch (default: ignored). */
  onError?: (err: unknown) => void;
}

/** A running {@link answerHangRequests} responder. */
export interface HangResponder {
  /** Stops listening; an answer under way finishes but publishes nothing. Idempotent. */
  stop(): void;
  /** Resolves once the responder has answered a round (for tests), with the round. */
  readonly answered: Promise<number>;
}

/**
 * Waits, through the process's shared background watch of the store (no polling; it never keeps the
 * process alive), for a report round to open and then publishes this rank's tail once (as an answering
 * rank). A store error ends it.
 */
export function answerHangRequests(opts: AnswerOptions): HangResponder {
  let stopped = false;
  let resolveAnswered: (round: number) => void = () => {};
  const answered = new Promise<number>((resolve) => resolveAnswered = resolve);
  const answer = async () => {
    try {
      if (stopped) return;
      const round = Number(decoder.decode(await opts.store.get(REQUEST_KEY)));
      if (stopped || !Number.isSafeInteger(round)) return;
      await publishTail(opts.store, opts.rank, round, opts.tail(), false);
      stopped = true;
      resolveAnswered(round);
    } catch (err) {
      stopped = true;
      opts.onError?.(err);
    }
  };
  const fail = (err: unknown) => {
    if (stopped) return;
    stopped = true;
    opts.onError?.(err);
  };
  const sub = onKeySet(opts.store, REQUEST_KEY, () => void answer(), fail);
  return {
    answered,
    stop() {
      stopped = true;
      sub.stop();
    },
  };
}

/** Parses a published tail, checking its shape; undefined when it is not one (or not `rank`'s). */
export function parseTail(bytes: Uint8Array, rank: number): PublishedTail | undefined {
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (o.rank !== rank || typeof o.collecting !== "boolean" || !Array.isArray(o.entries)) return undefined;
  if (!o.entries.every(isEntry)) return undefined;
  return { rank, collecting: o.collecting, entries: o.entries };
}

function isEntry(v: unknown): v is FlightEntry {
  if (typeof v !== "object" || v === null) return false;
  const e = v as Record<string, unknown>;
  return typeof e.seq === "number" && typeof e.op === "string" && typeof e.dtype === "string" &&
    typeof e.count === "number" && typeof e.root === "number" && typeof e.bytes === "number" &&
    typeof e.group === "number" && typeof e.startUs === "number" &&
    (e.state === "running" || e.state === "done" || e.state === "failed");
}
