/**
 * @module
 * README's headline table from one `bash bench/compare/headline.sh` run: reads the JSON lines of its
 * `--compare --rounds N` runs (one file per rank count) and the machine's limits (`--limits`), and
 * prints a Markdown table with every row, those choir loses included: choir against Gloo (TCP only)
 * and Open MPI at its best variant (named) on the same wire, each ratio the median of per-round ratios
 * with its min-max spread, and how far each choir row is from this machine's limit. choir's `pg.alloc`
 * rows follow in a table of their own: a different operation, never in a ratio.
 *
 * usage: deno run --allow-read bench/headline.ts DIR   (DIR holds n2.jsonl, n4.jsonl, limits.json)
 */

import { fmtSpread, speedRatio } from "./formats/ratios.ts";
import { fmtGBs, fmtUs, sizeLabel } from "./formats/text.ts";
import type { MachineLimits } from "./limits.ts";
import type { BenchRow } from "./row.ts";

/** Sizes up to this are latency rows (compared with half a round trip); larger ones bandwidth rows. */
const LATENCY_MAX = 64 * 1024;

/** A time or a busbw, as the row's size calls for. */
function figure(r: BenchRow): string {
  return r.bytes <= LATENCY_MAX ? `${fmtUs(r.timeUs)} us` : `${fmtGBs(r.busbw)} GB/s`;
}

/**
 * How far choir's row is from the machine: latency rows as multiples of a one-way trip (half the C
 * ping-pong's round trip on the same medium: the faster of blocking and polling reads for TCP),
 * bandwidth rows as busbw over the medium's rate: for shared memory memcpy of 64 MiB per core with both
 * cores copying (rows that fit in the caches, or `pg.alloc` rows that copy nothing, can exceed it), for
 * TCP loopback both ways at once, per direction.
 */
function fromLimit(r: BenchRow, wire: string, l: MachineLimits | null): string {
  if (!l) return "n/a";
  if (r.bytes <= LATENCY_MAX) {
    const oneWay = (wire === "tcp" ? Math.min(l.tcpRttUs, l.tcpRttUsPoll) : l.shmRttUs) / 2;
    return `${(r.timeUs / oneWay).toFixed(0)}x a one-way trip (${oneWay.toFixed(2)} us)`;
  }
  const [bw, what] = wire === "tcp" ? [l.tcpGBsBoth, "TCP both ways"] : [l.memcpyGBs2, "memcpy per core"];
  return `${(r.busbw / bw).toFixed(2)}x ${what} (${bw.toFixed(1)} GB/s)`;
}

/** The Markdown lines of the headline tables. */
export function headlineTable(rows: readonly BenchRow[], limits: MachineLimits | null): string[] {
  const out = [
    "| ranks | transport | size | choir | other library (at its best) | other's time / choir's, median [min-max] | choir against the machine's limit |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ];
  const find = (series: string, like: BenchRow) =>
    rows.find((r) => r.series === series && r.bytes === like.bytes && r.nranks === like.nranks);
  const choirRows = rows.filter((r) => r.lib === "choir" && r.buffers === "array")
    .sort((a, b) => a.nranks - b.nranks || a.series.localeCompare(b.series) || a.bytes - b.bytes);
  for (const c of choirRows) {
    const wire = c.transport === "tcp" ? "tcp" : "shm";
    const others = wire === "tcp" ? ["openmpi tcp", "gloo"] : ["openmpi shm"];
    for (const name of others) {
      const o = find(name, c);
      if (!o) continue;
      const who = o.variant
        ? `${name} (${o.variant === "default" ? "its default" : `alg ${o.variant}`})`
        : name;
      out.push(
        `| ${c.nranks} | ${wire === "tcp" ? "TCP" : "shared memory"} | ${sizeLabel(c.bytes)} | ${
          figure(c)
        } | ` +
          `${who}: ${figure(o)} | ${fmtSpread(speedRatio(c, o))} | ${fromLimit(c, wire, limits)} |`,
      );
    }
  }
  const alloc = rows.filter((r) => r.lib === "choir" && r.buffers === "alloc");
  if (alloc.length > 0) {
    out.push(
      "",
      "`pg.alloc` buffers (symmetric memory every rank of the host maps; allreduce in place, no copies): a",
      "different operation from an allreduce of ordinary arrays, so no library is set against it.",
      "",
      "| ranks | size | choir, `pg.alloc` buffers | choir, ordinary arrays | against the machine |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const a of alloc.sort((x, y) => x.nranks - y.nranks || x.bytes - y.bytes)) {
      const plain = rows.find((r) =>
        r.lib === "choir" && r.buffers === "array" && r.transport !== "tcp" && r.bytes === a.bytes &&
        r.nranks === a.nranks
      );
      out.push(
        `| ${a.nranks} | ${sizeLabel(a.bytes)} | ${figure(a)} | ${plain ? figure(plain) : "n/a"} | ` +
          `${fromLimit(a, "shm", limits)} |`,
      );
    }
  }
  return out;
}

if (import.meta.main) {
  const dir = Deno.args[0];
  if (!dir) {
    console.error("usage: deno run --allow-read bench/headline.ts DIR");
    Deno.exit(2);
  }
  const rows: BenchRow[] = [];
  for (const entry of [...Deno.readDirSync(dir)].filter((e) => /^n\d+\.jsonl$/.test(e.name))) {
    const text = await Deno.readTextFile(`${dir}/${entry.name}`);
    for (const line of text.split("\n")) if (line.trim()) rows.push(JSON.parse(line) as BenchRow);
  }
  const limits = await Deno.readTextFile(`${dir}/limits.json`).then((t) => JSON.parse(t) as MachineLimits)
    .catch(() => null);
  for (const line of headlineTable(rows, limits)) console.log(line);
}
