/**
 * @module
 * Small text helpers the output formats share: padding, number formats as nccl-tests prints them,
 * human sizes, and the line sink every format writes through.
 */

import type { BenchRow } from "../row.ts";

/** Receives rows as they are finished, then the end of the run. */
export interface RowSink {
  /** One finished row. */
  row(r: BenchRow): void;
  /** No more rows: flush what is pending. */
  end(): void;
}

/** Where a format writes its lines. */
export type WriteLine = (line: string) => void;

/** `s` right-aligned in `w` columns. */
export const padL = (s: string | number, w: number): string => String(s).padStart(w);

/** `s` left-aligned in `w` columns. */
export const padR = (s: string | number, w: number): string => String(s).padEnd(w);

/** A time in microseconds as nccl-tests prints it (two decimals below 1 ms), or `n/a`. */
export function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return "n/a";
  return us >= 1000 ? us.toFixed(0) : us.toFixed(2);
}

/** A bandwidth in GB/s with two decimals (three below 0.1). */
export function fmtGBs(x: number): string {
  if (!Number.isFinite(x)) return "n/a";
  return x < 0.1 && x > 0 ? x.toFixed(3) : x.toFixed(2);
}

/** A percentage with one decimal. */
export function fmtPct(x: number): string {
  return Number.isFinite(x) ? x.toFixed(1) : "n/a";
}

/** A ratio such as `1.33x`, `12.4x`, `210x`, or `n/a`. */
export function fmtRatio(x: number): string {
  if (!Number.isFinite(x) || x <= 0) return "n/a";
  return (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)) + "x";
}

/** A size in bytes as a short label: `8 B`, `1 KiB`, `64 MiB`, `1 GiB` (or `1.5 KiB`). */
export function sizeLabel(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const num = Number.isInteger(v) ? String(v) : v.toFixed(v >= 100 ? 0 : 1);
  return `${num} ${units[u]}`;
}

/** `in-place` or `out-of-place`. */
export function placeName(inPlace: boolean): string {
  return inPlace ? "in-place" : "out-of-place";
}
