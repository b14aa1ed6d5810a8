/**
 * @module
 * Runs one choir series: starts the ranks of bench/rank.ts through the launcher with the series'
 * transport, algorithm (CHOIR_ALGO) and buffers (transport `worker`: as Worker ranks of this process),
 * and hands rank 0's `CASE`/`ROW` lines to the caller; every other line of every rank goes to the
 * caller's log, `[rank N]`-prefixed (Worker ranks print straight to this process's output).
 */

import { launch } from "../launch/mod.ts";
import { spawnWorkers } from "../transports/worker/spawn.ts";
import type { CpuBind } from "../collectives/mod.ts";
import type { RunConfig } from "./cases.ts";
import { parseLine, type RawRow, type Series } from "./row.ts";

/** What a series runner reports while it runs. */
export interface SeriesHandlers {
  /** Row `index` started. */
  onCase(index: number): void;
  /** A row was measured. */
  onRow(raw: RawRow): void;
  /** Any other output line (already prefixed with where it came from). */
  onLog(line: string): void;
}

/** Runs `series` (a choir series) on `nproc` local ranks; resolves to the job's exit code. */
export async function runChoir(
  series: Series,
  cfg: RunConfig,
  nproc: number,
  h: SeriesHandlers,
  bindTo: CpuBind = "none",
): Promise<number> {
  if (series.transport === "worker") return await runWorkers(series, cfg, nproc, h);
  const result = await launch({
    program: new URL("./rank.ts", import.meta.url).pathname,
    args: [JSON.stringify({ ...cfg, alloc: series.buffers === "alloc" })],
    nprocPerNode: nproc,
    bindTo,
    // "auto" is passed too, so a CHOIR_ALGO in the caller's environment cannot force the auto series.
    env: { CHOIR_TRANSPORT: series.transport, CHOIR_ALGO: series.algo },
    onOutput: (rank, stream, line) => {
      const m = rank === 0 && stream === "stdout" ? parseLine(line) : null;
      if (m?.kind === "case") h.onCase(m.index);
      else if (m?.kind === "row") h.onRow(m.raw);
      else h.onLog(`[${series.label} rank ${rank}] ${line}`);
    },
    log: (m) => h.onLog(`launch: ${m}`),
  });
  return result.code;
}

/** The series on Worker ranks: rank 0 posts its lines to this thread instead of printing them. */
async function runWorkers(series: Series, cfg: RunConfig, nproc: number, h: SeriesHandlers): Promise<number> {
  let group;
  try {
    group = await spawnWorkers(nproc, new URL("./rank.ts", import.meta.url), {
      data: { cfg: { ...cfg, alloc: series.buffers === "alloc" }, algo: series.algo },
      timeoutMs: 600_000,
    });
  } catch (e) {
    h.onLog(`[${series.label}] ${(e as Error).message}`);
    return 1;
  }
  group.workers[0].addEventListener("message", (e: MessageEvent) => {
    const line = (e.data as { benchLine?: string } | null)?.benchLine;
    if (typeof line !== "string") return;
    const m = parseLine(line);
    if (m?.kind === "case") h.onCase(m.index);
    else if (m?.kind === "row") h.onRow(m.raw);
    else h.onLog(`[${series.label} rank 0] ${line}`);
  });
  try {
    await group.finished();
    return 0;
  } catch (e) {
    h.onLog(`[${series.label}] ${(e as Error).message}`);
    return 1;
  } finally {
    await group.close();
  }
}
