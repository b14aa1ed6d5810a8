/**
 * @module
 * `workerProcessGroup()`: inside a Worker started by `spawnWorkers()`, joins the Worker group and
 * returns its ProcessGroup over the Worker transport (subgroups get their own shared memory the same
 * way), plus `workerData()` and `reportResult()` for the embedder. Starting Workers is
 * `transports/worker/spawn.ts`'s job.
 */

import { joinHub, type RankLink } from "../transports/worker/rank.ts";
import { openGroup } from "./open_group.ts";
import type { ProcessGroup } from "./process_group.ts";
import type { Algorithm } from "./plan/plan.ts";

/** Options of {@link workerProcessGroup}. */
export interface WorkerGroupOptions {
  /** Default timeout of every operation, ms (default: the one spawnWorkers was given). */
  timeoutMs?: number;
  /** Bytes per pipelined chunk of large messages (default 1 MiB). */
  chunkBytes?: number;
  /** Force this algorithm where it applies. */
  algorithm?: Algorithm;
  /** Deterministic reductions. */
  deterministic?: boolean;
}

/**
 * Joins the group of Worker ranks this Worker belongs to and returns the world ProcessGroup; the
 * spawner's `spawnWorkers()` resolves once every rank got here. Throws InvalidArgumentError when
 * not run in a Worker from `spawnWorkers()`.
 *
 * @example
 * ```ts
 * // rank.ts, started with spawnWorkers(4, new URL("./rank.ts", import.meta.url))
 * import { reportResult, workerProcessGroup } from "@choir/choir";
 * const pg = await workerProcessGroup();
 * const x = new Float64Array([pg.rank]);
 * await pg.allReduce(x);
 * reportResult(x[0]);
 * await pg.destroy();
 * ```
 */
export async function workerProcessGroup(opts: WorkerGroupOptions = {}): Promise<ProcessGroup> {
  const link = await joinHub();
  try {
    const pg = await openGroup({
      job: {
        store: link.store,
        token: "",
        transport: "worker",
        segments: link,
        worldSpec: link.spec,
        chunkBytes: opts.chunkBytes,
        algorithm: opts.algorithm,
        deterministic: opts.deterministic ?? false,
      },
      tag: "pg0",
      ranks: Array.from({ length: link.size }, (_, r) => r),
      rank: link.rank,
      timeoutMs: opts.timeoutMs ?? link.timeoutMs,
      onDestroy: () => {
        link.close();
        link.left();
        return Promise.resolve();
      },
    });
    link.joined();
    return pg;
  } catch (e) {
    link.failed(e);
    link.close();
    throw e;
  }
}

/** What `spawnWorkers()` passed as `data` to this rank (undefined before the rank joined). */
export async function workerData<T = unknown>(): Promise<T> {
  return (await joinHub() as RankLink).data as T;
}

/** Hands `value` (structured-cloned) to the spawner's `WorkerGroup.results()`. */
export function reportResult(value: unknown): void {
  (globalThis as unknown as { postMessage(m: unknown): void }).postMessage({ choir: "result", value });
}
