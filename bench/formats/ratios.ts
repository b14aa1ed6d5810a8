/**
 * @module
 * The comparison tables of `--compare`: for each choir series and each op, dtype, reduce op and
 * placement, one line per size with the median time of choir and of each other library, and choir's
 * speed ratio to each (the other's time over choir's, which equals choir's busbw over the other's:
 * above 1, choir is faster). Open MPI is matched by transport (choir tcp with Open MPI over TCP,
 * choir shm/auto with Open MPI's shared memory); Gloo always runs over TCP.
 */

import { type BenchRow, caseKey, type Series } from "../row.ts";
import { fmtRatio, fmtUs, padL, placeName } from "./text.ts";

/** One comparison: a choir series against the series of the other libraries it is measured with. */
export interface Pairing {
  /** The choir series. */
  choir: Series;
  /** The other series, in column order. */
  others: Series[];
}

/** The Open MPI variant a transport compares with: tcp, ucx, or shared memory for the rest. */
function wireOf(transport: string): string {
  return transport === "tcp" || transport === "ucx" ? transport : "shm";
}

/** Pairs each choir series with Gloo and the Open MPI variant of its transport. */
export function pairings(series: readonly Series[]): Pairing[] {
  const others = series.filter((s) => s.lib !== "choir");
  return series.filter((s) => s.lib === "choir").map((choir) => ({
    choir,
    others: others.filter((o) =>
      o.lib === "gloo" || (o.lib === "openmpi" && wireOf(o.transport) === wireOf(choir.transport))
    ),
  })).filter((p) => p.others.length > 0);
}

/** The ratio of `other`'s time to `choir`'s (NaN when either is missing or unsupported). */
export function speedRatio(choir: BenchRow | undefined, other: BenchRow | undefined): number {
  if (!choir || !other || choir.unsupported || other.unsupported) return NaN;
  return other.timeUs / choir.timeUs;
}

/** The lines of every comparison table of `rows`. */
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
        "#   ratio = other's median time / choir's (= choir's busbw / other's); above 1: choir is faster",
      );
      const w = (s: Series) => Math.max(12, s.label.length + 6);
      out.push(
        "#" + padL("size", 11) + padL(`${choir.label}(us)`, w(choir)) +
          others.map((o) => padL(`${o.label}(us)`, w(o))).join("") +
          others.map((o) => padL(`choir/${o.label}`, Math.max(14, o.label.length + 8))).join(""),
      );
      for (const r of list) {
        const other = others.map((o) => bySeries.get(o.label)?.get(caseKey(r)));
        out.push(
          padL(r.bytes, 12) + padL(fmtUs(r.timeUs), w(choir)) +
            other.map((x, i) => padL(x && !x.unsupported ? fmtUs(x.timeUs) : "n/a", w(others[i]))).join("") +
            other.map((x, i) => padL(fmtRatio(speedRatio(r, x)), Math.max(14, others[i].label.length + 8)))
              .join(""),
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
