/**
 * @module
 * Line handling of the launcher: splits a child's output stream into lines (a partial line waits for
 * its end, up to {@link MAX_LINE_BYTES}; a longer one is cut there and marked; a last line without
 * newline still comes out), and writes `[rank N] `-prefixed lines to our stdout and stderr in the
 * background through bounded queues ({@link QueuedWriter}), so that a reader who stops reading (a pager,
 * a full pipe, a slow log shipper) never blocks the event loop that serves the store: rank output beyond
 * the queue is dropped, counted and marked. Where lines go besides (files, tails) is elastic/rank_logs.ts's.
 */

/** Where a line came from. */
export type OutputStream = "stdout" | "stderr";

/** The longest line passed on, in bytes; the rest of a longer line, up to its newline, is dropped. */
export const MAX_LINE_BYTES = 64 * 1024;

/** Bytes of output each of our streams may have queued before more is dropped (4 MiB). */
export const OUTPUT_QUEUE_BYTES = 4 << 20;

/**
 * Reads `stream` to its end, calling `onLines` with the complete lines of each chunk (without their
 * "\n"), and finally with the unterminated last line, if any. A line longer than `maxLineBytes` comes
 * out as its first `maxLineBytes` (at a character boundary) followed by ` [line cut at N bytes]`, and
 * the rest of it is dropped, so a child that never ends its line holds at most `maxLineBytes` here.
 * Resolves when the stream ends.
 */
export async function splitLines(
  stream: ReadableStream<Uint8Array>,
  onLines: (lines: string[]) => void,
  maxLineBytes: number = MAX_LINE_BYTES,
): Promise<void> {
  const decoder = new TextDecoder();
  let parts: Uint8Array[] = [];
  let held = 0;
  let cutting = false;
  const take = (): string => {
    const bytes = new Uint8Array(held);
    let off = 0;
    for (const p of parts) {
      bytes.set(p, off);
      off += p.length;
    }
    parts = [];
    held = 0;
    return decoder.decode(bytes);
  };
  for await (const chunk of stream) {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const nl = chunk.indexOf(10, pos);
      const end = nl < 0 ? chunk.length : nl;
      if (!cutting) {
        const room = maxLineBytes - held;
        if (end - pos > room) {
          let keep = pos + room;
          while (keep > pos && (chunk[keep] & 0xc0) === 0x80) keep--; // not inside a character
          parts.push(chunk.slice(pos, keep));
          held += keep - pos;
          lines.push(`${take()} [line cut at ${maxLineBytes} bytes]`);
          cutting = true;
        } else if (end > pos) {
          parts.push(chunk.slice(pos, end));
          held += end - pos;
        }
      }
      if (nl < 0) break;
      if (!cutting) lines.push(take());
      cutting = false;
      pos = nl + 1;
    }
    if (lines.length > 0) onLines(lines);
  }
  if (!cutting && held > 0) onLines([take()]);
}

/** Something {@link QueuedWriter} writes to: `Deno.stdout`, `Deno.stderr`, a file, a pipe. */
export interface AsyncWritable {
  /** Writes some of `p`; resolves with how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
}

const encoder = new TextEncoder();

/**
 * Writes text to `out` in the background: `write()` never waits. Text waits in a queue of at most
 * `capacity` bytes; what does not fit (the reader is not reading) is dropped, whole writes at a time,
 * and counted; once the queue has drained, a line saying how many lines were dropped there is written
 * in their place.
 */
export class QueuedWriter {
  readonly #out: AsyncWritable;
  readonly #capacity: number;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #pumping = false;
  #gap = 0;
  #dropped = 0;
  #idle: (() => void)[] = [];
  #onFirstDrop?: () => void;

  /** A writer to `out` queueing at most `capacity` bytes; `onFirstDrop` is called when it first drops. */
  constructor(out: AsyncWritable, capacity: number = OUTPUT_QUEUE_BYTES, onFirstDrop?: () => void) {
    this.#out = out;
    this.#capacity = capacity;
    this.#onFirstDrop = onFirstDrop;
  }

  /** Lines dropped so far because the reader did not keep up. */
  get droppedLines(): number {
    return this.#dropped;
  }

  /** Queues `text` (`lines` lines of it); returns false when it was dropped instead. */
  write(text: string, lines = 1): boolean {
    const bytes = encoder.encode(text);
    if (this.#queued + bytes.length > this.#capacity) {
      this.#gap += lines;
      if (this.#dropped === 0) this.#onFirstDrop?.();
      this.#dropped += lines;
      return false;
    }
    this.#push(bytes);
    return true;
  }

  /** Resolves true once everything queued is written, or false after `timeoutMs` (the reader is stuck). */
  flush(timeoutMs: number): Promise<boolean> {
    if (!this.#pumping) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.#idle.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  #push(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    if (!this.#pumping) {
      this.#pumping = true;
      this.#pump();
    }
  }

  async #pump(): Promise<void> {
    try {
      for (;;) {
        const next = this.#queue.shift();
        if (next === undefined) break;
        for (let off = 0; off < next.length;) off += await this.#out.write(next.subarray(off));
        this.#queued -= next.length;
        if (this.#gap > 0 && this.#queued <= this.#capacity / 2) {
          const gap = this.#gap;
          this.#gap = 0;
          this.#queue.push(
            encoder.encode(`[launch: ${gap} line(s) dropped here: output was not being read]\n`),
          );
        }
      }
    } catch {
      // The reader went away (broken pipe): nothing more can be written.
      this.#queue.length = 0;
      this.#queued = 0;
    } finally {
      this.#pumping = false;
      for (const wake of this.#idle.splice(0)) wake();
    }
  }
}

let terminal: Record<OutputStream, QueuedWriter> | undefined;

/**
 * This process's stdout and stderr as {@link QueuedWriter}s (one pair per process, made on first use).
 * When stdout first drops output, a line on stderr says so.
 */
export function terminalWriters(): Record<OutputStream, QueuedWriter> {
  if (terminal === undefined) {
    const stderr = new QueuedWriter(Deno.stderr);
    const stdout = new QueuedWriter(Deno.stdout, OUTPUT_QUEUE_BYTES, () => {
      stderr.write("launch: stdout is not being read: dropping rank output until it is\n");
    });
    terminal = { stdout, stderr };
  }
  return terminal;
}

/** Queues `lines` of `rank` for this process's stdout or stderr, each prefixed with `[rank N] `. */
export function writePrefixed(rank: number, stream: OutputStream, lines: string[]): void {
  const prefix = `[rank ${rank}] `;
  terminalWriters()[stream].write(lines.map((line) => prefix + line + "\n").join(""), lines.length);
}
