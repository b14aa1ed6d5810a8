/**
 * @module
 * The scale harness's `--plot`: an SVG written by hand with three log-log panels against the number of
 * ranks: the time until each start-up phase ended, the store's requests and peak connections, and the
 * TCP links between ranks, each beside a dashed line of linear growth from the smallest run.
 */

import { escapeXml } from "../plot.ts";
import type { ScaleRow } from "./scale_row.ts";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const W = 420, H = 280, M = { left: 64, right: 150, top: 30, bottom: 44 };

interface Series {
  label: string;
  points: [number, number][];
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

function panel(x0: number, title: string, yLabel: string, series: Series[]): string {
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => x > 0 && y > 0);
  if (pts.length === 0) return "";
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const [xl, xh] = [Math.min(...xs) / 1.3, Math.max(...xs) * 1.3];
  const [yl, yh] = [Math.min(...ys) / 2, Math.max(...ys) * 2];
  const px = (x: number) => x0 + M.left + ((Math.log(x) - Math.log(xl)) / (Math.log(xh) - Math.log(xl))) * W;
  const py = (y: number) => M.top + H - ((Math.log(y) - Math.log(yl)) / (Math.log(yh) - Math.log(yl))) * H;
  let svg = `<text x="${x0 + M.left}" y="18" font-weight="bold">${escapeXml(title)}</text>`;
  svg += `<rect x="${x0 + M.left}" y="${M.top}" width="${W}" height="${H}" fill="none" stroke="#999"/>`;
  for (const t of logTicks(yl, yh).filter((t) => t >= yl && t <= yh)) {
    svg += `<line x1="${x0 + M.left}" x2="${x0 + M.left + W}" y1="${py(t)}" y2="${py(t)}" stroke="#eee"/>`;
    svg += `<text x="${x0 + M.left - 6}" y="${py(t) + 4}" text-anchor="end" font-size="11">${t}</text>`;
  }
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    svg += `<text x="${px(x)}" y="${M.top + H + 16}" text-anchor="middle" font-size="11">${x}</text>`;
  }
  svg += `<text x="${x0 + M.left + W / 2}" y="${
    M.top + H + 36
  }" text-anchor="middle" font-size="12">ranks</text>`;
  svg += `<text transform="translate(${x0 + 14},${
    M.top + H / 2
  }) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(yLabel)}</text>`;
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const p = s.points.filter(([x, y]) => x > 0 && y > 0).sort((a, b) => a[0] - b[0]);
    if (p.length === 0) return;
    svg += `<polyline fill="none" stroke="${c}" stroke-width="2" points="${
      p.map(([x, y]) => `${px(x)},${py(y)}`).join(" ")
    }"/>`;
    for (const [x, y] of p) svg += `<circle cx="${px(x)}" cy="${py(y)}" r="3" fill="${c}"/>`;
    // Linear growth from the smallest point, to compare the slope against.
    const [x1, y1] = p[0];
    const xEnd = p[p.length - 1][0];
    if (xEnd > x1) {
      svg +=
        `<line x1="${px(x1)}" y1="${py(y1)}" x2="${px(xEnd)}" y2="${py((y1 * xEnd) / x1)}" stroke="${c}" ` +
        `stroke-dasharray="4 4" opacity="0.5"/>`;
    }
    svg += `<text x="${x0 + M.left + W + 8}" y="${M.top + 14 + i * 16}" fill="${c}" font-size="12">${
      escapeXml(s.label)
    }</text>`;
  });
  return svg;
}

/** The SVG of `rows` (several runs per size are drawn as they come; dashed: linear growth). */
export function scalePlotSvg(rows: readonly ScaleRow[]): string {
  const by = (f: (r: ScaleRow) => number): [number, number][] => rows.map((r) => [r.n, f(r)]);
  const phases = Object.keys(rows[0]?.phasesMs ?? {});
  const cell = W + M.left + M.right;
  const body = panel(
    0,
    "start-up phases (cumulative)",
    "ms",
    phases.map((p) => ({
      label: p,
      points: by((r) => r.phasesMs[p]),
    })),
  ) +
    panel(cell, "store load", "count", [
      { label: "requests", points: by((r) => r.requests) },
      { label: "peak store conns", points: by((r) => r.peakStoreConnections) },
    ]) +
    panel(2 * cell, "links between ranks", "count", [
      { label: "TCP links", points: by((r) => r.links) },
      { label: "MiB/rank x100", points: by((r) => r.rssMiBPerRank * 100) },
    ]);
  const width = 3 * cell;
  const height = H + M.top + M.bottom + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">` +
    `<rect width="100%" height="100%" fill="white"/>${body}</svg>\n`;
}
