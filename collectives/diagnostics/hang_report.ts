/**
 * @module
 * Hang diagnosis from the flight-recorder tails of a group's ranks: which collective is stalled,
 * which ranks are in it (ready), which are behind (missing, with their last op), which run another
 * op at that sequence number, and which did not answer; as data and as text whose stall line is in
 * the Horovod stall-inspector style (op, ready ranks, missing ranks). Pure functions; gathering the tails is hang_protocol.ts's job.
 *
 * Integration: nothing to call directly; `reportHang` (hang_protocol.ts) returns an
 * {@link HangReport} whose `text` the reporting rank prints.
 */

import type { FlightEntry } from "./flight_recorder.ts";

/** Operation names with their own per-peer sequence numbers, left out of the stall analysis. */
const P2P_OPS: ReadonlySet<string> = new Set(["send", "recv"]);

/** A rank that has not reached the stalled collective. */
export interface BehindRank {
  /** The rank. */
  rank: number;
  /** Its latest collective, if it recorded any. */
  last?: FlightEntry;
}

/** A rank that runs a different operation at the stalled sequence number. */
export interface MismatchedRank {
  /** The rank. */
  rank: number;
  /** What it runs at that sequence number. */
  entry: FlightEntry;
}

/** The oldest collective some rank is blocked in, and where every rank stands relative to it. */
export interface Stall {
  /** The stalled collective, as the ranks in it recorded it. */
  entry: FlightEntry;
  /** Ranks that entered it (still running it or past it). */
  ready: number[];
  /** Ranks that answered but have not reached it, with their latest collective. */
  missing: BehindRank[];
  /** Ranks that run another operation under its sequence number. */
  mismatched: MismatchedRank[];
  /** How long the oldest of its running entries has run when the report was made, in seconds. */
  runningSeconds?: number;
}

/** Where one rank stands. */
export interface RankStanding {
  /** The rank. */
  rank: number;
  /** Whether its tail arrived. */
  answered: boolean;
  /** Its oldest running operation (collective or p2p), if any. */
  running?: FlightEntry;
  /** Its latest collective, if any. */
  last?: FlightEntry;
}

/** What {@link analyzeHang} concludes. */
export interface HangReport {
  /** Group id (from the options, else the entries). */
  group: number;
  /** Ranks in the group. */
  size: number;
  /** The stalled collective; absent when no answering rank is inside a collective. */
  stall?: Stall;
  /** Ranks whose tail did not arrive (dead, or not answering). */
  noAnswer: number[];
  /** Every rank's standing, by rank. */
  ranks: RankStanding[];
  /** The report in words: the stall line, then one line per further finding. */
  text: string;
}

/** Options of {@link analyzeHang}. */
export interface AnalyzeOptions {
  /** Group id named in the text (default: the entries' group, else 0). */
  group?: number;
  /** The time of the report, in microseconds since the Unix epoch (default: now). */
  nowUs?: number;
}

/**
 * Builds the hang report of a group from each rank's flight-recorder tail (`tails[r]`, oldest
 * first), `undefined` for a rank that did not answer.
 */
export function analyzeHang(
  tails: readonly (readonly FlightEntry[] | undefined)[],
  opts: AnalyzeOptions = {},
): HangReport {
  const nowUs = opts.nowUs ?? Date.now() * 1000;
  const ranks: RankStanding[] = tails.map((t, rank) => standing(rank, t));
  const noAnswer = ranks.filter((r) => !r.answered).map((r) => r.rank);
  const group = opts.group ?? tails.find((t) => t && t.length > 0)?.[0].group ?? 0;
  const stall = findStall(tails, ranks, nowUs);
  const report: HangReport = { group, size: tails.length, noAnswer, ranks, text: "" };
  if (stall) report.stall = stall;
  report.text = describeReport(report);
  return report;
}

function standing(rank: number, tail: readonly FlightEntry[] | undefined): RankStanding {
  const s: RankStanding = { rank, answered: tail !== undefined };
  for (const e of tail ?? []) {
    if (e.state === "running" && (s.running === undefined || e.startUs < s.running.startUs)) s.running = e;
    if (!P2P_OPS.has(e.op) && (s.last === undefined || e.seq >= s.last.seq)) s.last = e;
  }
  return s;
}

function findStall(
  tails: readonly (readonly FlightEntry[] | undefined)[],
  ranks: readonly RankStanding[],
  nowUs: number,
): Stall | undefined {
  // The oldest collective any rank is blocked in.
  let seq = Infinity;
  for (const t of tails) {
    for (const e of t ?? []) if (e.state === "running" && !P2P_OPS.has(e.op) && e.seq < seq) seq = e.seq;
  }
  if (seq === Infinity) return undefined;

  // What each rank recorded under that sequence number; the most common fingerprint is the stalled
  // op (ties go to the lowest rank), the others are mismatches.
  const at = new Map<number, FlightEntry>();
  tails.forEach((t, rank) => {
    const e = t?.find((x) => x.seq === seq && !P2P_OPS.has(x.op));
    if (e) at.set(rank, e);
  });
  const votes = new Map<string, { n: number; entry: FlightEntry }>();
  for (const e of at.values()) {
    const v = votes.get(fingerprint(e));
    if (v) v.n++;
    else votes.set(fingerprint(e), { n: 1, entry: e });
  }
  let best: { n: number; entry: FlightEntry } | undefined;
  for (const v of votes.values()) if (best === undefined || v.n > best.n) best = v;
  const entry = best!.entry;
  const key = fingerprint(entry);

  const stall: Stall = { entry, ready: [], missing: [], mismatched: [] };
  let oldest = Infinity;
  for (const r of ranks) {
    if (!r.answered) continue;
    const mine = at.get(r.rank);
    if (mine && fingerprint(mine) !== key) stall.mismatched.push({ rank: r.rank, entry: mine });
    else if (mine || (r.last !== undefined && r.last.seq > seq)) {
      stall.ready.push(r.rank);
      if (mine?.state === "running" && mine.startUs > 0 && mine.startUs < oldest) oldest = mine.startUs;
    } else {
      const behind: BehindRank = { rank: r.rank };
      if (r.last) behind.last = r.last;
      stall.missing.push(behind);
    }
  }
  if (oldest < Infinity) stall.runningSeconds = Math.max(0, (nowUs - oldest) / 1e6);
  return stall;
}

function fingerprint(e: FlightEntry): string {
  return `${e.op}/${e.reduceOp ?? ""}/${e.dtype}/${e.count}/${e.root}`;
}

/** An entry in words: `allReduce #41 done`. */
function describeEntry(e: FlightEntry): string {
  return `${e.op} #${e.seq} ${e.state}`;
}

/** An entry's shape in words: `f32 x 1024`, with `, root 2` / `, tag 2` when it has one. */
function shape(e: FlightEntry): string {
  const extra = e.root < 0 ? "" : P2P_OPS.has(e.op) ? `, tag ${e.root}` : `, root ${e.root}`;
  return `${e.dtype} x ${e.count}${extra}`;
}

/** Rank lists in words, runs of three or more as ranges: `0, 2, 5-9`. */
export function formatRanks(ranks: readonly number[]): string {
  const sorted = [...ranks].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    if (j - i >= 2) parts.push(`${sorted[i]}-${sorted[j]}`);
    else for (let k = i; k <= j; k++) parts.push(String(sorted[k]));
    i = j + 1;
  }
  return parts.join(", ");
}

/** The report's text: a headline, then the stall line (or why there is none) and other findings. */
function describeReport(r: HangReport): string {
  const lines = [`choir hang report: group ${r.group}, ${r.size} ranks`];
  const s = r.stall;
  if (s) {
    const clauses = [`ready ranks ${formatRanks(s.ready) || "none"}`];
    if (s.missing.length > 0) {
      const each = s.missing.map((m) =>
        `${m.rank} (its last: ${m.last ? describeEntry(m.last) : "none recorded"})`
      );
      clauses.push(`missing ranks ${each.join(", ")}`);
    }
    if (s.mismatched.length > 0) {
      const each = s.mismatched.map((m) => `${m.rank} (runs ${m.entry.op} ${shape(m.entry)})`);
      clauses.push(`mismatched ranks ${each.join(", ")}`);
    }
    if (r.noAnswer.length > 0) clauses.push(`no answer from ranks ${formatRanks(r.noAnswer)}`);
    const age = s.runningSeconds === undefined ? "" : ` for ${s.runningSeconds.toFixed(1)} s`;
    lines.push(`${s.entry.op} #${s.entry.seq} (${shape(s.entry)}) stalled${age}: ${clauses.join("; ")}`);
  } else {
    const tail = r.noAnswer.length > 0 ? `; no answer from ranks ${formatRanks(r.noAnswer)}` : "";
    lines.push(`no collective in flight on the ranks that answered${tail}`);
  }
  for (const st of r.ranks) {
    if (st.running && P2P_OPS.has(st.running.op)) {
      lines.push(`rank ${st.rank} is in ${st.running.op} #${st.running.seq} (${shape(st.running)})`);
    }
  }
  return lines.join("\n");
}
