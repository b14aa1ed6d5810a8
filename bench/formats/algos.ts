/**
 * @module
 * The algorithm table of `--algo auto,ring,...`: for each choir transport and buffer kind, and each
 * op, dtype, reduce op and placement, one line per size with the median time under each forced
 * algorithm (CHOIR_ALGO), the best forced one, and whether the automatic plan is within 10% of it.
 */

import type { BenchRow } from "../row.ts";
import { fmtRatio, fmtUs, padL, placeName } from "./text.ts";

/** How much slower than the best forced algorithm the automatic plan may be. */
export const AUTO_SLACK = 1.1;

/** The verdict of one size: auto's time over the best forced algorithm's. */
export interface AlgoVerdict {
  /** The size, bytes. */
  bytes: number;
  /** The fastest forced algorithm. */
  best: string;
  /** auto / best (NaN without auto or without a forced time). */
  ratio: number;
  /** auto is within {@link AUTO_SLACK} of the best. */
  ok: boolean;
}

/** Lines of the algorithm tables, and every verdict (for a summary and tests). */
export function algoTables(rows: readonly BenchRow[], algos: readonly string[]): {
  lines: string[];
  verdicts: AlgoVerdict[];
} {
  const lines: string[] = [];
  const verdicts: AlgoVerdict[] = [];
  const choir = rows.filter((r) => r.lib === "choir");
  const setups = new Map<string, BenchRow[]>();
  for (const r of choir) {
    const k = `${r.transport}/${r.buffers}/${r.op}/${r.dtype}/${r.redop}/${r.inPlace}`;
    if (!setups.has(k)) setups.set(k, []);
    setups.get(k)!.push(r);
  }
  const forced = algos.filter((a) => a !== "auto");
  for (const list of setups.values()) {
    const first = list[0];
    const bySize = new Map<number, Map<string, BenchRow>>();
    for (const r of list) {
      if (!bySize.has(r.bytes)) bySize.set(r.bytes, new Map());
      bySize.get(r.bytes)!.set(r.algo, r);
    }
    const what = [first.type !== "none" ? first.type : "", first.redop !== "none" ? first.redop : ""]
      .filter((s) => s).join(" ");
    lines.push(
      `# ${first.op} ${what} ${
        placeName(first.inPlace)
      }, ${first.nranks} ranks, transport ${first.transport}` +
        `${first.buffers === "alloc" ? ", pg.alloc buffers" : ""}: median time (us) per algorithm`,
    );
    const w = (a: string) => Math.max(10, a.length + 2);
    lines.push(
      "#" + padL("size", 11) + algos.map((a) => padL(a, w(a))).join("") + padL("best", 20) +
        padL("auto/best", 11) + padL("within 10%", 12),
    );
    let slow = 0;
    for (const [bytes, byAlgo] of [...bySize].sort((a, b) => a[0] - b[0])) {
      const time = (a: string) => {
        const r = byAlgo.get(a);
        return r && !r.unsupported && r.wrong === 0 ? r.timeUs : NaN;
      };
      let best = "";
      for (const a of forced) if (Number.isFinite(time(a)) && (!best || time(a) < time(best))) best = a;
      const ratio = best ? time("auto") / time(best) : NaN;
      const ok = Number.isFinite(ratio) && ratio <= AUTO_SLACK;
      if (Number.isFinite(ratio)) {
        verdicts.push({ bytes, best, ratio, ok });
        if (!ok) slow++;
      }
      lines.push(
        padL(bytes, 12) + algos.map((a) => padL(fmtUs(time(a)), w(a))).join("") +
          padL(best ? `${best} ${fmtUs(time(best))}` : "n/a", 20) + padL(fmtRatio(ratio), 11) +
          padL(Number.isFinite(ratio) ? (ok ? "yes" : "NO") : "-", 12),
      );
    }
    if (algos.includes("auto") && forced.length > 0) {
      lines.push(
        slow === 0
          ? `# auto is within 10% of the best forced algorithm at every size`
          : `# auto is more than 10% slower than the best forced algorithm at ${slow} size(s)`,
      );
    }
    lines.push("");
  }
  return { lines, verdicts };
}
