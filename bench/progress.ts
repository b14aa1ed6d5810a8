/**
 * @module
 * The progress line on a terminal: which series, op and size is running and how far the run is, drawn
 * on stderr and redrawn in place. When stderr is not a terminal (piped, in CI) it draws nothing, so
 * logs stay clean. Every other line the bench prints goes through {@link Progress.out} or
 * {@link Progress.err}, which clear the line first so output and progress never mix.
 */

const enc = new TextEncoder();

/** Writes all of `text` to `w`. */
function writeAll(w: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = enc.encode(text);
  let off = 0;
  while (off < bytes.length) off += w.writeSync(bytes.subarray(off));
}

/** The progress display and the bench's line output. */
export class Progress {
  readonly #enabled: boolean;
  readonly #started = performance.now();
  #line = "";
  #shown = false;
  #lastDraw = 0;

  /** A display that draws when `enabled` (normally: `Deno.stderr.isTerminal()`). */
  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }

  /** Whether the display draws. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /**
   * Sets the status: `what` is running, `done` of `total` rows are finished. Redrawn at most ten
   * times a second unless `force`.
   */
  status(what: string, done: number, total: number, force = false): void {
    if (!this.#enabled) return;
    const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
    const secs = Math.round((performance.now() - this.#started) / 1000);
    const clock = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
    const width = 24;
    const fill = total > 0 ? Math.round((width * done) / total) : 0;
    const bar = "#".repeat(fill) + ".".repeat(width - fill);
    this.#line = `[${bar}] ${done}/${total} rows ${pct}% ${clock}  ${what}`;
    const now = performance.now();
    if (!force && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    this.#draw();
  }

  /** Writes a line to stdout, keeping the progress line below it. */
  out(line: string): void {
    this.#clear();
    writeAll(Deno.stdout, line + "\n");
    this.#draw();
  }

  /** Writes a line to stderr, keeping the progress line below it. */
  err(line: string): void {
    this.#clear();
    writeAll(Deno.stderr, line + "\n");
    this.#draw();
  }

  /** Removes the progress line for good (end of the run). */
  done(): void {
    this.#clear();
    this.#line = "";
  }

  #clear(): void {
    if (this.#shown) writeAll(Deno.stderr, "\r\x1b[2K");
    this.#shown = false;
  }

  #draw(): void {
    if (!this.#enabled || this.#line === "") return;
    const cols = (() => {
      try {
        const c = Deno.consoleSize().columns;
        return c >= 40 ? c : 120; // a pty without a size reports 0
      } catch {
        return 120;
      }
    })();
    const text = this.#line.length >= cols ? this.#line.slice(0, Math.max(10, cols - 1)) : this.#line;
    writeAll(Deno.stderr, "\r\x1b[2K" + text);
    this.#shown = true;
  }
}
