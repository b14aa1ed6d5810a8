/**
 * @module
 * Formats benchmark rows in nccl-tests' layout (size, count, type, redop, root, time, algbw, busbw,
 * #wrong), one header per op, so the output reads like the tool practitioners already know.
 */

import type { BenchRow } from "./measure.ts";

const pad = (s: string | number, w: number) => String(s).padStart(w);

/** The two header lines of an op's table. */
export function header(op: string, nranks: number, transport: string): string {
  return [
    `# ${op}: ${nranks} ranks, transport ${transport}`,
    `#${pad("size", 11)}${pad("count", 13)}${pad("type", 8)}${pad("redop", 8)}${pad("root", 6)}` +
    `${pad("time", 10)}${pad("algbw", 8)}${pad("busbw", 8)}${pad("#wrong", 8)}${pad("p99", 10)}${
      pad("iters", 7)
    }`,
    `#${pad("(B)", 11)}${pad("(elements)", 13)}${pad("", 8)}${pad("", 8)}${pad("", 6)}` +
    `${pad("(us)", 10)}${pad("(GB/s)", 8)}${pad("(GB/s)", 8)}${pad("", 8)}${pad("(us)", 10)}${pad("", 7)}`,
  ].join("\n");
}

/** One row of the table. */
export function row(r: BenchRow): string {
  const t = r.timeUs >= 1000 ? r.timeUs.toFixed(0) : r.timeUs.toFixed(2);
  const p = r.p99Us >= 1000 ? r.p99Us.toFixed(0) : r.p99Us.toFixed(2);
  return ` ${pad(r.bytes, 11)}${pad(r.count, 13)}${pad(r.type, 8)}${pad(r.redop, 8)}${pad(r.root, 6)}` +
    `${pad(t, 10)}${pad(r.algbw.toFixed(2), 8)}${pad(r.busbw.toFixed(2), 8)}${pad(r.wrong, 8)}${pad(p, 10)}` +
    `${pad(r.iters, 7)}`;
}

/** Parses a size such as `8`, `64K`, `1M`, `1G` (powers of 1024). */
export function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)B?$/i.exec(s.trim());
  if (!m) throw new Error(`not a size: ${s}`);
  const mult = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as "" | "K" | "M" | "G"];
  return Number(m[1]) * mult;
}
