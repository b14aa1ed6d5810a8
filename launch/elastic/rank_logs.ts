/**
 * @module
 * Where worker output goes: to a callback or our terminal with `[rank N] ` prefixes, to a private file
 * per rank under `--log-dir` (`DIR/run-<hash of the run id>/round_R/rank_N.log`, directories 0700, files
 * 0600), and into a short in-memory tail per rank that the root-cause summary quotes. Splitting streams
 * into lines is ../output.ts's job.
 */

import { join } from "node:path";
import { hashedId } from "../../transports/token.ts";
import { type OutputStream, writePrefixed } from "../output.ts";

/** Lines of each rank kept for the root-cause summary. */
export const TAIL_LINES = 20;

const enc = new TextEncoder();

/**
 * The folder of round `round`'s logs of run `runId` under `logDir`. The run id may be a scheduler's job id
 * that a public token was derived from, so the path shows only a hash of it.
 */
export async function roundLogDir(logDir: string, runId: string, round: number): Promise<string> {
  return join(logDir, `run-${(await hashedId(runId)).slice(1, -1)}`, `round_${round}`);
}

/** The output sinks of one round on one node. */
export class RankLogs {
  readonly #tails = new Map<number, string[]>();
  readonly #files = new Map<number, Deno.FsFile>();
  readonly #dir?: string;
  readonly #onOutput?: (rank: number, stream: OutputStream, line: string) => void;

  /** Makes `dir` (0700); files are created on a rank's first line (`dir` undefined: no files). */
  constructor(
    dir: string | undefined,
    onOutput?: (rank: number, stream: OutputStream, line: string) => void,
  ) {
    this.#dir = dir;
    this.#onOutput = onOutput;
    // A rank's output may hold what the job reads and prints: its logs are its user's alone.
    if (dir !== undefined) Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  /** The log file of `rank`, when logging to files. */
  pathOf(rank: number): string | undefined {
    return this.#dir === undefined ? undefined : join(this.#dir, `rank_${rank}.log`);
  }

  /** Takes complete lines of `rank`: terminal (or callback), file, tail. */
  lines(rank: number, stream: OutputStream, lines: string[]): void {
    if (this.#onOutput === undefined) writePrefixed(rank, stream, lines);
    else for (const l of lines) this.#onOutput(rank, stream, l);
    const path = this.pathOf(rank);
    if (path !== undefined) {
      let f = this.#files.get(rank);
      if (f === undefined) {
        f = Deno.openSync(path, { append: true, create: true, mode: 0o600 });
        this.#files.set(rank, f);
      }
      const bytes = enc.encode(lines.map((l) => (stream === "stderr" ? `[stderr] ${l}` : l) + "\n").join(""));
      for (let off = 0; off < bytes.length;) off += f.writeSync(bytes.subarray(off));
    }
    const tail = this.#tails.get(rank) ?? [];
    tail.push(...lines);
    if (tail.length > TAIL_LINES) tail.splice(0, tail.length - TAIL_LINES);
    this.#tails.set(rank, tail);
  }

  /** The last lines `rank` printed (stdout and stderr interleaved as they came). */
  tail(rank: number): string[] {
    return [...(this.#tails.get(rank) ?? [])];
  }

  /** Closes the files. */
  close(): void {
    for (const f of this.#files.values()) f.close();
    this.#files.clear();
  }
}
