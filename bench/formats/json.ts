/**
 * @module
 * JSON lines: one object per row, every field of {@link BenchRow} (NaN becomes null).
 */

import type { BenchRow } from "../row.ts";
import type { RowSink, WriteLine } from "./text.ts";

/** The JSON line of a row. */
export function jsonLine(r: BenchRow): string {
  return JSON.stringify(r);
}

/** A sink that writes one JSON line per row. */
export function jsonSink(write: WriteLine): RowSink {
  return { row: (r) => write(jsonLine(r)), end: () => {} };
}
