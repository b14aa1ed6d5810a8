/**
 * @module
 * nccl-tests' layout: one table per series and op; each line is one size, dtype and reduce op, with
 * an out-of-place and an in-place column group side by side (only the groups the run measured), each
 * holding time (median), algbw, busbw and #wrong as nccl-tests prints them, then p99, cv% and iters.
 */

import { facts } from "../catalog.ts";
import { type PlaceMode, placesFor } from "../cases.ts";
import type { BenchRow } from "../row.ts";
import { fmtGBs, fmtPct, fmtUs, padL, placeName, type RowSink, type WriteLine } from "./text.ts";

const LEAD = [12, 13, 10, 11, 6]; // size, count, type, redop, root (bfloat16, premul_sum fit)
const GROUP = [10, 8, 8, 7, 10, 7, 7]; // time, algbw, busbw, #wrong, p99, cv%, iters
const GROUP_WIDTH = GROUP.reduce((a, b) => a + b, 0);

/** The header lines of a table of `r.op` with the given column groups. */
export function ncclHeader(r: BenchRow, groups: readonly boolean[]): string[] {
  const extra = [
    r.algo !== "auto" && r.algo !== "default" ? `algo ${r.algo}` : "",
    r.buffers === "alloc" ? "pg.alloc buffers" : "",
  ].filter((s) => s !== "");
  const title = `# ${r.series}: ${r.op}, ${r.nranks} ranks, transport ${r.transport}${
    extra.length ? ", " + extra.join(", ") : ""
  }`;
  const lead = LEAD.reduce((a, b) => a + b, 0) + 1;
  const centred = (s: string) => {
    const left = Math.floor((GROUP_WIDTH - s.length) / 2);
    return " ".repeat(left) + s + " ".repeat(GROUP_WIDTH - s.length - left);
  };
  const over = "#" + " ".repeat(lead - 1) + groups.map((inPlace) => centred(placeName(inPlace))).join("");
  const names = ["size", "count", "type", "redop", "root"];
  const units = ["(B)", "(elements)", "", "", ""];
  const gNames = ["time", "algbw", "busbw", "#wrong", "p99", "cv%", "iters"];
  const gUnits = ["(us)", "(GB/s)", "(GB/s)", "", "(us)", "(%)", ""];
  const line = (lead: string[], g: string[]) =>
    "#" + lead.map((s, i) => padL(s, LEAD[i] - (i === 0 ? 1 : 0))).join("") +
    groups.map(() => g.map((s, i) => padL(s, GROUP[i])).join("")).join("");
  return [title, over.trimEnd(), line(names, gNames), line(units, gUnits).trimEnd()];
}

/** The column group of one row (or blanks when the row is missing). */
function group(r: BenchRow | undefined): string {
  if (!r) return GROUP.map((w) => padL("-", w)).join("");
  if (r.unsupported) return padL("n/a", GROUP[0]) + GROUP.slice(1).map((w) => padL("", w)).join("");
  const cells = [
    fmtUs(r.timeUs),
    fmtGBs(r.algbw),
    fmtGBs(r.busbw),
    String(r.wrong),
    fmtUs(r.p99Us),
    fmtPct(r.cvPct),
    String(r.iters),
  ];
  return cells.map((c, i) => padL(c, GROUP[i])).join("");
}

/** One line: the lead columns of `any`, then a group per placement. */
export function ncclLine(byPlace: ReadonlyMap<boolean, BenchRow>, groups: readonly boolean[]): string {
  const any = [...byPlace.values()][0];
  const lead = [any.bytes, any.count, any.type, any.redop, any.root].map((v, i) => padL(v, LEAD[i])).join("");
  return lead + groups.map((g) => group(byPlace.get(g))).join("");
}

/** A sink that writes rows in nccl-tests' layout; `place` says which column groups each op gets. */
export function ncclSink(write: WriteLine, place: PlaceMode): RowSink {
  let section = "";
  let lineKey = "";
  let groups: boolean[] = [];
  let pending = new Map<boolean, BenchRow>();
  const notes = new Set<string>();
  const flush = () => {
    if (pending.size > 0) write(ncclLine(pending, groups));
    pending = new Map();
    lineKey = "";
  };
  return {
    row(r) {
      const key = `${r.series}/${r.op}`;
      if (key !== section) {
        flush();
        if (section) write("");
        section = key;
        const places = placesFor(r.op, place);
        groups = places.length > 0 ? places.map((p) => p === "in") : [r.inPlace];
        if (!facts(r.op).sized) groups = [false];
        for (const h of ncclHeader(r, groups)) write(h);
      }
      const lk = `${r.dtype}/${r.redop}/${r.bytes}`;
      if (lk !== lineKey) flush();
      lineKey = lk;
      if (r.unsupported && !notes.has(`${key}/${r.unsupported}`)) {
        notes.add(`${key}/${r.unsupported}`);
        write(`# ${r.series} cannot run ${r.op} ${r.type} ${r.redop}: ${r.unsupported}`);
      }
      pending.set(r.inPlace, r);
      if (groups.every((g) => pending.has(g))) flush();
    },
    end: flush,
  };
}
