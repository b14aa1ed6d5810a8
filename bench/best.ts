/**
 * @module
 * An anchor at its best: Open MPI runs as several variant series on one wire (its default choice, each
 * forced coll_tuned algorithm, coll_tuned off), and the tables show, per row, the variant with the
 * lowest median time under the group's label (`openmpi shm`), naming it, with the default's time
 * beside it. Rows of other series pass through unchanged.
 */

import type { BenchRow, Series } from "./row.ts";
import { caseKey } from "./row.ts";

/** The run's rows and series with each variant group folded into one series of its fastest variants. */
export interface BestOf {
  /** Rows of plain series, then one row per case per group. */
  rows: BenchRow[];
  /** Plain series, then one series per group (labelled by the group). */
  series: Series[];
}

/** Folds every variant group of `series` into its fastest variant per case. */
export function bestOfGroups(rows: readonly BenchRow[], series: readonly Series[]): BestOf {
  const plain = series.filter((s) => !s.group);
  const out: BestOf = {
    rows: rows.filter((r) => plain.some((s) => s.label === r.series)),
    series: [...plain],
  };
  const groups = [...new Set(series.flatMap((s) => (s.group ? [s.group] : [])))];
  for (const group of groups) {
    const members = series.filter((s) => s.group === group);
    out.series.push({ ...members[0], label: group, algo: "best", group: undefined, variantNames: undefined });
    const byCase = new Map<string, BenchRow[]>();
    for (const r of rows) {
      const s = members.find((m) => m.label === r.series);
      if (!s) continue;
      const key = caseKey(r);
      if (!byCase.has(key)) byCase.set(key, []);
      byCase.get(key)!.push({ ...r, algo: s.algo, variant: s.variantNames?.[r.op] ?? s.algo });
    }
    for (const list of byCase.values()) {
      const timed = list.filter((r) => !r.unsupported && Number.isFinite(r.timeUs));
      const best = timed.length > 0 ? timed.reduce((a, b) => (b.timeUs < a.timeUs ? b : a)) : list[0];
      const def = list.find((r) => r.algo === "default");
      const { variant } = best;
      out.rows.push({
        ...best,
        series: group,
        variant,
        variants: timed.length,
        ...(def && !def.unsupported ? { defaultUs: def.timeUs } : {}),
      });
    }
  }
  return out;
}
