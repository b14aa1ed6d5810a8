/**
 * @module
 * The join protocol's control round: every synchronized step of DistributedDataParallel starts with
 * one small allreduce in which each rank says whether it is still training (and whether buffers are
 * broadcast this step), so that ranks that have run out of data can answer the others' collectives
 * with zeros until every rank has joined. The step logic that uses it lives in distributed.ts.
 */

import { type ProcessGroup, ReduceOp } from "../collectives/mod.ts";

/** What the ranks said in one control round. */
export interface Control {
  /** The ranks still training this step, ascending (empty: every rank has joined). */
  readonly active: readonly number[];
  /** Whether the training ranks broadcast buffers this step. */
  readonly buffers: boolean;
  /** The rank whose state is authoritative this step (the lowest training rank; 0 when none). */
  readonly authority: number;
}

/** Bytes one control round puts through the allreduce. */
export function controlBytes(size: number): number {
  return 4 * (size + 1);
}

/**
 * Starts the control round at once (so it precedes the step's other collectives) and resolves with
 * what all ranks said. `training`: this rank takes part in the step with gradients; `buffers`: it
 * broadcasts buffers this step.
 */
export function controlRound(
  pg: ProcessGroup,
  training: boolean,
  buffers: boolean,
  timeoutMs?: number,
): Promise<Control> {
  const v = new Float32Array(pg.size + 1);
  if (training) v[pg.rank] = 1;
  if (buffers) v[pg.size] = 1;
  const work = pg.allReduce(v, { op: ReduceOp.SUM, async: true, timeoutMs });
  return work.wait().then(() => {
    const active: number[] = [];
    for (let r = 0; r < pg.size; r++) if (v[r] > 0) active.push(r);
    return { active, buffers: v[pg.size] > 0, authority: active.length ? active[0] : 0 };
  });
}
