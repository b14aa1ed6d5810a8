/**
 * @module
 * A result row, as every output format, the plot and the comparison tables read it, and the small
 * line protocol that carries raw rows from the ranks (choir's and the comparison scripts') to the
 * parent: `CASE <index>` when a row starts, `ROW <json>` when it is measured.
 */

import type { DType } from "../collectives/mod.ts";
import { busFactor, facts, NCCL_TYPE, type OpName, type RedOp } from "./catalog.ts";
import type { Case } from "./cases.ts";
import type { TimeStats } from "./stats.ts";

/** The libraries a run can measure. */
export type Lib = "choir" | "gloo" | "openmpi";

/** One line of a plot and one column of a comparison: a library with its settings. */
export interface Series {
  /** Label in tables and legends (`choir tcp`, `gloo`, `openmpi shm`, `choir algo=ring` ...). */
  label: string;
  /** The library. */
  lib: Lib;
  /** Requested transport: choir `auto`/`tcp`/`shm`; Gloo `tcp`; Open MPI `shm` or `tcp`. */
  transport: string;
  /** choir: forced algorithm (CHOIR_ALGO), or `auto`; others: `default`. */
  algo: string;
  /** choir: `array` (ordinary typed arrays) or `alloc` (pg.alloc symmetric memory). */
  buffers: "array" | "alloc";
  /**
   * Several variants of one library on one wire (Open MPI's default and each forced algorithm) share
   * a group: the tables show the group's fastest variant per row under this label.
   */
  group?: string;
  /** A variant's name per op, where it says more than `algo` (Open MPI: `4 ring`, `default`). */
  variantNames?: Partial<Record<OpName, string>>;
}

/** What a rank reports for one row (`ROW` line). */
export interface RawRow extends Partial<TimeStats> {
  /** The row's index in the run's case list. */
  index: number;
  /** Wrong elements over all ranks. */
  wrong?: number;
  /** The transport the group really used (choir: `pg.backend`). */
  transport?: string;
  /** Why the library cannot run this row (comparison scripts), if it cannot. */
  unsupported?: string;
}

/** A finished row. */
export interface BenchRow extends TimeStats {
  /** Series label. */
  series: string;
  /** Library. */
  lib: Lib;
  /** Transport used. */
  transport: string;
  /** Algorithm (`auto` = the library's choice). */
  algo: string;
  /** Buffers (`array` or `alloc`). */
  buffers: string;
  /** Op. */
  op: OpName;
  /** Element type (u8 for object payloads and barrier). */
  dtype: DType;
  /** nccl-tests' type name, `bytes` for object payloads, `none` for barrier. */
  type: string;
  /** Reduce op or `none`. */
  redop: RedOp;
  /** Root rank, or -1. */
  root: number;
  /** The result overwrote the input (nccl-tests' in-place). */
  inPlace: boolean;
  /** Bytes of the whole buffer. */
  bytes: number;
  /** Elements of the whole buffer. */
  count: number;
  /** Ranks. */
  nranks: number;
  /** bytes / median time, GB/s (1e9 B/s). */
  algbw: number;
  /** algbw times the op's bus factor, GB/s. */
  busbw: number;
  /** Wrong elements found by the checks, over all ranks (and rounds). */
  wrong: number;
  /** Why the library cannot run the row (then the times are NaN). */
  unsupported?: string;
  /** Median time of each round, when the run had several rounds (in round order). */
  roundsUs?: number[];
  /** Of a variant group's row (bench/best.ts): the fastest variant's name, e.g. `4 ring` or `default`. */
  variant?: string;
  /** Of a variant group's row: how many variants ran the row. */
  variants?: number;
  /** Of a variant group's row: the default variant's median time. */
  defaultUs?: number;
  /** Position in the run's case list. */
  index: number;
}

/** The `CASE` line a rank prints before row `index` starts. */
export function caseLine(index: number): string {
  return `CASE ${index}`;
}

/** The `ROW` line a rank prints for a measured row. */
export function rowLine(raw: RawRow): string {
  return `ROW ${JSON.stringify(raw)}`;
}

/** A line of the protocol, or null for any other output. */
export type Message = { kind: "case"; index: number } | { kind: "row"; raw: RawRow };

/** Parses a protocol line; other lines give null. */
export function parseLine(line: string): Message | null {
  if (line.startsWith("CASE ")) return { kind: "case", index: Number(line.slice(5)) };
  if (line.startsWith("ROW ")) {
    try {
      return { kind: "row", raw: JSON.parse(line.slice(4)) as RawRow };
    } catch {
      return null;
    }
  }
  return null;
}

/** The finished row of case `c`, measured by `series` over `n` ranks. */
export function finishRow(c: Case, raw: RawRow, s: Series, n: number): BenchRow {
  const timeUs = raw.timeUs ?? NaN;
  const algbw = c.bytes > 0 && timeUs > 0 ? c.bytes / timeUs / 1000 : 0;
  const f = facts(c.op);
  return {
    series: s.label,
    lib: s.lib,
    transport: raw.transport ?? s.transport,
    algo: s.algo,
    buffers: s.buffers,
    op: c.op,
    dtype: c.dtype,
    type: f.typed ? NCCL_TYPE[c.dtype] : f.sized ? "bytes" : "none",
    redop: c.redop,
    root: c.root,
    inPlace: c.place === "in",
    bytes: c.bytes,
    count: c.count,
    nranks: n,
    timeUs,
    meanUs: raw.meanUs ?? NaN,
    p99Us: raw.p99Us ?? NaN,
    minUs: raw.minUs ?? NaN,
    cvPct: raw.cvPct ?? NaN,
    iters: raw.iters ?? 0,
    algbw,
    busbw: algbw * busFactor(c.op, n),
    wrong: raw.wrong ?? 0,
    ...(raw.unsupported ? { unsupported: raw.unsupported } : {}),
    index: c.index,
  };
}

/** The key of the row's case regardless of series: rows of one key are comparable across series. */
export function caseKey(r: BenchRow): string {
  return `${r.op}/${r.dtype}/${r.redop}/${r.inPlace ? "in" : "out"}/${r.bytes}`;
}
