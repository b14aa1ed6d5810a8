/**
 * @module
 * A timeline of one rank's training step: spans on named tracks (compute phases, each bucket's
 * allreduce), written as a Chrome trace (chrome://tracing, Perfetto) or drawn as text, to see whether
 * communication runs during backward. Recording is the caller's and DistributedDataParallel's job.
 */

/** One span of a {@link Timeline}, in milliseconds since the timeline's origin. */
export interface TimelineSpan {
  /** The row it is drawn on (`compute`, `comm`, ...). */
  readonly track: string;
  /** What ran (`backward`, `bucket 1 allreduce`, ...). */
  readonly name: string;
  /** Start, in ms since {@link Timeline.origin}. */
  readonly start: number;
  /** End, in ms since {@link Timeline.origin}. */
  readonly end: number;
  /** One character that draws it in {@link Timeline.render} (default: the name's first). */
  readonly glyph?: string;
}

/** One event of a Chrome trace (`ph: "X"`, complete event; times in microseconds). */
export interface ChromeTraceEvent {
  /** The span's name. */
  name: string;
  /** The span's track, as a category. */
  cat: string;
  /** Always "X" (a complete event). */
  ph: "X";
  /** Start in us. */
  ts: number;
  /** Duration in us. */
  dur: number;
  /** Process id: the rank. */
  pid: number;
  /** Thread id: the track's position. */
  tid: number;
}

/** Spans of one rank, recorded as they end. */
export class Timeline {
  /** `performance.now()` at creation; every span time is relative to it. */
  readonly origin: number = performance.now();
  readonly #spans: TimelineSpan[] = [];

  /** Every span recorded, in the order they ended. */
  get spans(): readonly TimelineSpan[] {
    return this.#spans;
  }

  /** Milliseconds since {@link Timeline.origin}. */
  now(): number {
    return performance.now() - this.origin;
  }

  /** Records a span that started at `start` (from {@link Timeline.now}) and ends now. */
  end(track: string, name: string, start: number, glyph?: string): void {
    this.#spans.push({ track, name, start, end: this.now(), glyph });
  }

  /** Runs `fn` and records it as a span. */
  async span<T>(track: string, name: string, fn: () => T | Promise<T>, glyph?: string): Promise<T> {
    const start = this.now();
    try {
      return await fn();
    } finally {
      this.end(track, name, start, glyph);
    }
  }

  /** Forgets every span (e.g. those of warm-up steps). */
  clear(): void {
    this.#spans.length = 0;
  }

  /** The spans as Chrome trace events (JSON.stringify `{ traceEvents }` to open them in Perfetto). */
  toChromeTrace(pid = 0): ChromeTraceEvent[] {
    const tracks = this.#tracks();
    return this.#spans.map((s) => ({
      name: s.name,
      cat: s.track,
      ph: "X",
      ts: Math.round(s.start * 1000),
      dur: Math.max(1, Math.round((s.end - s.start) * 1000)),
      pid,
      tid: tracks.indexOf(s.track),
    }));
  }

  /**
   * Draws the spans between `from` and `to` (default: all of them) as one text row per track,
   * `width` characters wide; each span is drawn with its glyph, later spans over earlier ones.
   */
  render(width = 100, from?: number, to?: number): string {
    if (this.#spans.length === 0) return "(no spans)";
    const t0 = from ?? Math.min(...this.#spans.map((s) => s.start));
    const t1 = to ?? Math.max(...this.#spans.map((s) => s.end));
    const per = (t1 - t0) / width || 1;
    const tracks = this.#tracks();
    const pad = Math.max(...tracks.map((t) => t.length));
    const rows = tracks.map((track) => {
      const row = Array<string>(width).fill(".");
      for (const s of this.#spans) {
        if (s.track !== track || s.end < t0 || s.start > t1) continue;
        const a = Math.max(0, Math.floor((s.start - t0) / per));
        const b = Math.min(width, Math.max(a + 1, Math.ceil((s.end - t0) / per)));
        row.fill(s.glyph ?? s.name[0], a, b);
      }
      return `${track.padEnd(pad)} |${row.join("")}|`;
    });
    return [...rows, `${"".padEnd(pad)}  0 ms${`${(t1 - t0).toFixed(1)} ms`.padStart(width - 4)}`].join("\n");
  }

  #tracks(): string[] {
    return [...new Set(this.#spans.map((s) => s.track))];
  }
}
