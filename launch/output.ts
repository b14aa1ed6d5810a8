/**
 * @module
 * Line handling of the launcher: splits a child's output stream into lines (a partial line waits for
 * its end; a last line without newline still comes out) and writes `[rank N] `-prefixed lines.
 */

/** Where a line came from. */
export type OutputStream = "stdout" | "stderr";

/**
 * Reads `stream` to its end, calling `onLines` with the complete lines of each chunk (without their
 * "\n"), and finally with the unterminated last line, if any. Resolves when the stream ends.
 */
export async function splitLines(
  stream: ReadableStream<Uint8Array>,
  onLines: (lines: string[]) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    const text = pending + decoder.decode(chunk, { stream: true });
    const lines = text.split("\n");
    pending = lines.pop()!;
    if (lines.length > 0) onLines(lines);
  }
  pending += decoder.decode();
  if (pending !== "") onLines([pending]);
}

const encoder = new TextEncoder();

/** Writes `lines` of `rank` to this process's stdout or stderr, each prefixed with `[rank N] `. */
export function writePrefixed(rank: number, stream: OutputStream, lines: string[]): void {
  const prefix = `[rank ${rank}] `;
  const text = lines.map((line) => prefix + line + "\n").join("");
  writeAll(stream === "stdout" ? Deno.stdout : Deno.stderr, encoder.encode(text));
}

/** Writes every byte (one call normally; loops on partial writes), so lines of ranks never interleave. */
export function writeAll(out: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += out.writeSync(bytes.subarray(off));
}
