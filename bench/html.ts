/**
 * @module
 * `--html`: one self-contained page with the run's settings, the plot (inline SVG), the comparison
 * and algorithm tables as printed, and every row in a table.
 */

import { escapeXml } from "./plot.ts";
import type { BenchRow } from "./row.ts";
import { fmtGBs, fmtPct, fmtUs, placeName } from "./formats/text.ts";

/** What the report shows. */
export interface Report {
  /** Page title. */
  title: string;
  /** Lines describing the run (command, machine, date). */
  about: string[];
  /** The plot (an SVG document). */
  svg: string;
  /** Comparison table lines (empty without --compare). */
  ratios: string[];
  /** Algorithm table lines (empty without --algo). */
  algos: string[];
  /** Every row. */
  rows: readonly BenchRow[];
}

/** The HTML page of a report. */
export function htmlReport(rep: Report): string {
  const e = escapeXml;
  const cells = (r: BenchRow) =>
    [
      r.series,
      r.op,
      r.type,
      r.redop,
      placeName(r.inPlace),
      String(r.bytes),
      r.unsupported ? `n/a: ${r.unsupported}` : fmtUs(r.timeUs),
      fmtUs(r.p99Us),
      fmtPct(r.cvPct),
      fmtGBs(r.algbw),
      fmtGBs(r.busbw),
      String(r.wrong),
      String(r.iters),
    ].map((c) => `<td>${e(c)}</td>`).join("");
  const head = ["series", "op", "type", "redop", "placement", "size (B)", "time (us)", "p99 (us)", "cv %"]
    .concat(["algbw (GB/s)", "busbw (GB/s)", "#wrong", "iters"]).map((h) => `<th>${e(h)}</th>`).join("");
  const svg = rep.svg.replace(/^<\?xml[^>]*>\s*/, "");
  const pre = (title: string, lines: string[]) =>
    lines.length ? `<h2>${e(title)}</h2>\n<pre>${e(lines.join("\n"))}</pre>` : "";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${e(rep.title)}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
pre { background: #f4f4f4; padding: 1em; overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #eee; }
td:nth-child(-n+5) { text-align: left; }
.plot { overflow-x: auto; }
</style>
</head>
<body>
<h1>${e(rep.title)}</h1>
<ul>
${rep.about.map((a) => `<li>${e(a)}</li>`).join("\n")}
</ul>
<div class="plot">
${svg}
</div>
${pre("choir against the other libraries", rep.ratios)}
${pre("Algorithms", rep.algos)}
<h2>Every row</h2>
<table>
<tr>${head}</tr>
${rep.rows.map((r) => `<tr>${cells(r)}</tr>`).join("\n")}
</table>
</body>
</html>
`;
}
