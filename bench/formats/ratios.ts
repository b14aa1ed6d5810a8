/**
 * @module
 * The comparison tables of `--compare`: for each choir series on ordinary arrays and each op, dtype,
 * reduce op and placement, one line per size with choir's median time, each other library's (Open
 * MPI at its best variant, named, with its default's time beside it), and choir's speed ratio to each:
 * the median over rounds of (other's time / choir's time) in the same round, with its min-max spread.
 * Above 1, choir is faster. Like is paired with like: Gloo (TCP only) with choir over TCP, Open MPI
 * with choir on the same wire (shared memory for choir's shm, auto and Worker series). choir's
 * `pg.alloc` series is a different operation (in place on symmetric memory) and is never in a ratio.
 */

import { type BenchRow, caseKey, type Series } from "../row.ts";
import { median } from "../stats.ts";
import { fmtRatio, fmtUs, padL, padR, placeName } from "./text.ts";

/** One comparison: a choir series against the series of the other libraries it is measured with. */
export interface Pairing {
  /** The choir series. */
  choir: Series;
  /** The other series, in column order. */
  others: Series[];
}

/** The wire a transport runs on, as the other libraries name it: tcp, ucx, or shared memory. */
function wireOf(transport: string): string {
  return transport === "tcp" || transport === "ucx" ? transport : "shm";
}

/** Pairs each choir series on ordinary arrays with the other series on the same wire. */
export function pairings(series: readonly Series[]): Pairing[] {
  const others = series.filter((s) => s.lib !== "choir");
  return series.filter((s) => s.lib === "choir" && s.buffers === "array").map((choir) => ({
    choir,
    others: others.filter((o) => wireOf(o.transport) === wireOf(choir.transport)),
  })).filter((p) => p.others.length > 0);
}

/** choir's speed ratio to another library on one row: the median of per-round ratios, and their range. */
export interface Ratio {
  /** Median over rounds of other's time / choir's time (NaN when either is missing or unsupported). */
  median: number;
  /** Lowest per-round ratio. */
  min: number;
  /** Highest per-round ratio. */
  max: number;
  /** Rounds that paired. */
  rounds: number;
}

/** The ratio of `other`'s time to `choir`'s, round by round (rows of one round when they have no rounds). */
export function speedRatio(choir: BenchRow | undefined, other: BenchRow | undefined): Ratio {
  const none = { median: NaN, min: NaN, max: NaN, rounds: 0 };
  if (!choir || !other || choir.unsupported || other.unsupported) return none;
  const a = choir.roundsUs ?? [choir.timeUs];
  const b = other.roundsUs ?? [other.timeUs];
  const per: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] > 0 && Number.isFinite(b[i])) per.push(b[i] / a[i]);
  }
  if (per.length === 0) return none;
  return { median: median(per), min: Math.min(...per), max: Math.max(...per), rounds: per.length };
}

/** A ratio with its spread: `1.23x [1.10-1.41]` (the spread only when several rounds paired). */
export function fmtSpread(r: Ratio): string {
  if (!Number.isFinite(r.median)) return "n/a";
  if (r.rounds < 2) return fmtRatio(r.median);
  return `${fmtRatio(r.median)} [${fmtRatio(r.min).slice(0, -1)}-${fmtRatio(r.max)}]`;
}

/** The lines of every comparison table of `rows` (variant groups already folded: bench/best.ts). */
export function ratioTables(rows: readonly BenchRow[], series: readonly Series[]): string[] {
  const out: string[] = [];
  const bySeries = new Map<string, Map<string, BenchRow>>();
  for (const r of rows) {
    if (!bySeries.has(r.series)) bySeries.set(r.series, new Map());
    bySeries.get(r.series)!.set(caseKey(r), r);
  }
  for (const { choir, others } of pairings(series)) {
    const mine = rows.filter((r) => r.series === choir.label);
    const groups = new Map<string, BenchRow[]>();
    for (const r of mine) {
      const g = `${r.op}/${r.dtype}/${r.redop}/${r.inPlace}`;
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g)!.push(r);
    }
    for (const list of groups.values()) {
      const first = list[0];
      const what = [first.type !== "none" ? first.type : "", first.redop !== "none" ? first.redop : ""]
        .filter((s) => s).join(" ");
      out.push(
        `# ${first.op} ${what} ${placeName(first.inPlace)}, ${first.nranks} ranks: ${choir.label} against ` +
          `${others.map((o) => o.label).join(", ")}`,
      );
      out.push(
        "#   ratio = other's time / choir's in the same round, median over rounds [min-max]; above 1: " +
          "choir is faster",
      );
      const hasBest = others.map((o) => list.some((r) => bySeries.get(o.label)?.get(caseKey(r))?.variant));
      const w = (s: Series) => Math.max(12, s.label.length + 6);
      out.push(
        "#" + padL("size", 11) + padL(`${choir.label}(us)`, w(choir)) +
          others.map((o, i) =>
            padL(`${o.label}(us)`, w(o)) +
            (hasBest[i] ? padL("best variant", 22) + padL("default(us)", 13) : "")
          ).join("") +
          others.map((o) => padL(`choir/${o.label}`, 24)).join(""),
      );
      for (const r of list) {
        const other = others.map((o) => bySeries.get(o.label)?.get(caseKey(r)));
        out.push(
          padL(r.bytes, 12) + padL(fmtUs(r.timeUs), w(choir)) +
            other.map((x, i) =>
              padL(x && !x.unsupported ? fmtUs(x.timeUs) : "n/a", w(others[i])) +
              (hasBest[i]
                ? padL(padR(x?.variant ?? "n/a", 20), 22) + padL(fmtUs(x?.defaultUs ?? NaN), 13)
                : "")
            ).join("") +
            other.map((x) => padL(fmtSpread(speedRatio(r, x)), 24)).join(""),
        );
      }
      const unsupported = others.flatMap((o) => {
        const why = list.map((r) => bySeries.get(o.label)?.get(caseKey(r))?.unsupported).find((u) => u);
        return why ? [`#   ${o.label}: ${why}`] : [];
      });
      out.push(...unsupported, "");
    }
  }
  return out;
}
