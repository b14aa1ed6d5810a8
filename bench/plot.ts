/**
 * @module
 * `--plot`: an SVG, written by hand, with one row of two log-log panels per op — bus bandwidth (GB/s)
 * and median time (us) against size — and one line per series (choir's solid, other libraries'
 * dashed), the same colour in both panels, with a legend beside each row. Barrier has no size and is
 * left out. No dependency: the markup is built as text.
 */

import { facts } from "./catalog.ts";
import type { BenchRow } from "./row.ts";

const PALETTE = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#ff7f0e",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#7f7f7f",
  "#bcbd22",
];

const PANEL_W = 420;
const PANEL_H = 260;
const MARGIN = { left: 64, right: 16, top: 28, bottom: 44 };
const LEGEND_W = 250;
const ROW_H = PANEL_H + MARGIN.top + MARGIN.bottom + 12;
const CELL_W = PANEL_W + MARGIN.left + MARGIN.right;

/** Escapes text for SVG/HTML. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A line of the plot: one series (and variant) of one op. */
interface Line {
  label: string;
  color: string;
  dashed: boolean;
  points: { x: number; busbw: number; time: number }[];
}

/** Short size label for an axis: 8, 1K, 64M, 1G. */
function axisSize(b: number): string {
  if (b >= 1024 ** 3) return `${b / 1024 ** 3}G`;
  if (b >= 1024 ** 2) return `${b / 1024 ** 2}M`;
  if (b >= 1024) return `${b / 1024}K`;
  return `${b}`;
}

/** A decade label: 0.001 .. 100, then 1k, 10k, 1M ... */
function decadeLabel(e: number): string {
  if (e < -3) return `1e${e}`;
  if (e < 0) return (10 ** e).toFixed(-e);
  if (e < 3) return String(10 ** e);
  if (e < 6) return `${10 ** (e - 3)}k`;
  return `${10 ** (e - 6)}M`;
}

/** One log-log panel at (x0, y0); returns its SVG. */
function panel(
  x0: number,
  y0: number,
  title: string,
  lines: readonly Line[],
  pick: (p: Line["points"][number]) => number,
  xRange: [number, number],
): string {
  const out: string[] = [];
  const ys = lines.flatMap((l) => l.points.map(pick)).filter((v) => Number.isFinite(v) && v > 0);
  let eMin = ys.length ? Math.floor(Math.log10(Math.min(...ys))) : 0;
  let eMax = ys.length ? Math.ceil(Math.log10(Math.max(...ys))) : 1;
  if (eMax <= eMin) eMax = eMin + 1;
  if (eMax - eMin > 12) eMin = eMax - 12;
  const [lx0, lx1] = [Math.log2(xRange[0]), Math.log2(Math.max(xRange[1], xRange[0] * 2))];
  const px = (b: number) => x0 + MARGIN.left + ((Math.log2(b) - lx0) / (lx1 - lx0)) * PANEL_W;
  const py = (v: number) => y0 + MARGIN.top + PANEL_H - ((Math.log10(v) - eMin) / (eMax - eMin)) * PANEL_H;
  const left = x0 + MARGIN.left;
  const top = y0 + MARGIN.top;
  out.push(
    `<text x="${left + PANEL_W / 2}" y="${y0 + 18}" text-anchor="middle" font-weight="bold">${
      escapeXml(title)
    }</text>`,
  );
  out.push(`<rect x="${left}" y="${top}" width="${PANEL_W}" height="${PANEL_H}" fill="#fff" stroke="#444"/>`);
  // y grid: decades (labelled) and their 2..9 multiples (light).
  for (let e = eMin; e <= eMax; e++) {
    const y = py(10 ** e);
    out.push(`<line x1="${left}" x2="${left + PANEL_W}" y1="${y}" y2="${y}" stroke="#ccc"/>`);
    out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${decadeLabel(e)}</text>`);
    if (e < eMax) {
      for (let m = 2; m <= 9; m++) {
        const ym = py(m * 10 ** e);
        out.push(`<line x1="${left}" x2="${left + PANEL_W}" y1="${ym}" y2="${ym}" stroke="#eee"/>`);
      }
    }
  }
  // x grid: powers of two, a label every `step` of them.
  const k0 = Math.ceil(lx0);
  const k1 = Math.floor(lx1);
  const step = Math.max(1, Math.ceil((k1 - k0 + 1) / 9));
  for (let k = k0; k <= k1; k++) {
    const x = px(2 ** k);
    const major = (k - k0) % step === 0;
    out.push(
      `<line x1="${x}" x2="${x}" y1="${top}" y2="${top + PANEL_H}" stroke="${major ? "#ccc" : "#f0f0f0"}"/>`,
    );
    if (major) {
      out.push(`<text x="${x}" y="${top + PANEL_H + 16}" text-anchor="middle">${axisSize(2 ** k)}</text>`);
    }
  }
  out.push(
    `<text x="${left + PANEL_W / 2}" y="${top + PANEL_H + 34}" text-anchor="middle">size (bytes)</text>`,
  );
  for (const l of lines) {
    const pts = l.points.filter((p) => Number.isFinite(pick(p)) && pick(p) > 0);
    if (pts.length === 0) continue;
    const coords = pts.map((p) => `${px(p.x).toFixed(1)},${py(pick(p)).toFixed(1)}`);
    const dash = l.dashed ? ` stroke-dasharray="6 3"` : "";
    out.push(
      `<polyline points="${coords.join(" ")}" fill="none" stroke="${l.color}" stroke-width="1.8"${dash}/>`,
    );
    for (const c of coords) {
      const [cx, cy] = c.split(",");
      out.push(`<circle cx="${cx}" cy="${cy}" r="2.4" fill="${l.color}"/>`);
    }
  }
  return out.join("\n");
}

/** The SVG document of `rows`, titled `title`. */
export function plotSvg(rows: readonly BenchRow[], title: string): string {
  const measured = rows.filter((r) => !r.unsupported && facts(r.op).sized && Number.isFinite(r.timeUs));
  const ops = [...new Set(measured.map((r) => r.op))];
  const seriesNames = [...new Set(rows.map((r) => r.series))];
  const colorOf = new Map<string, string>();
  const body: string[] = [];
  let y = 40;
  for (const op of ops) {
    const mine = measured.filter((r) => r.op === op);
    const variant = (r: BenchRow) =>
      [r.type, r.redop !== "none" ? r.redop : "", r.inPlace ? "in-place" : "out-of-place"].filter((s) => s)
        .join(" ");
    const variants = [...new Set(mine.map(variant))];
    const lines: Line[] = [];
    for (const s of seriesNames) {
      for (const v of variants) {
        const pts = mine.filter((r) => r.series === s && variant(r) === v).sort((a, b) => a.bytes - b.bytes);
        if (pts.length === 0) continue;
        const label = variants.length > 1 ? `${s}, ${v}` : s;
        if (!colorOf.has(label)) colorOf.set(label, PALETTE[colorOf.size % PALETTE.length]);
        lines.push({
          label,
          color: colorOf.get(label)!,
          dashed: pts[0].lib !== "choir",
          points: pts.map((r) => ({ x: r.bytes, busbw: r.busbw, time: r.timeUs })),
        });
      }
    }
    const xs = mine.map((r) => r.bytes).filter((b) => b > 0);
    const xRange: [number, number] = [Math.min(...xs), Math.max(...xs)];
    const what = variants.length === 1
      ? ` (${variants[0]}, ${mine[0].nranks} ranks)`
      : ` (${mine[0].nranks} ranks)`;
    body.push(panel(0, y, `${op}${what}: bus bandwidth (GB/s)`, lines, (p) => p.busbw, xRange));
    body.push(panel(CELL_W, y, `${op}: median time (us)`, lines, (p) => p.time, xRange));
    lines.forEach((l, i) => {
      const ly = y + MARGIN.top + 10 + i * 18;
      const lx = 2 * CELL_W + 8;
      const dash = l.dashed ? ` stroke-dasharray="6 3"` : "";
      body.push(
        `<line x1="${lx}" x2="${
          lx + 26
        }" y1="${ly}" y2="${ly}" stroke="${l.color}" stroke-width="2"${dash}/>`,
        `<text x="${lx + 32}" y="${ly + 4}">${escapeXml(l.label)}</text>`,
      );
    });
    y += ROW_H;
  }
  if (ops.length === 0) {
    body.push(`<text x="20" y="${y + 20}">No sized rows to plot.</text>`);
    y += 40;
  }
  const width = 2 * CELL_W + LEGEND_W;
  const height = y + 10;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fafafa"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${
      escapeXml(title)
    }</text>`,
    ...body,
    `</svg>`,
    "",
  ].join("\n");
}
