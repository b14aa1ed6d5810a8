/**
 * @module
 * Ring reduce-scatter: n-1 pipelined steps after which rank r holds block r reduced over all ranks.
 * Works in place on a buffer the caller owns (the group passes a copy of the user's input).
 *
 * Cost: (n-1) * alpha + (n-1)/n * S * beta + (n-1)/n * S * gamma for an input of S bytes.
 */

import type { Call, Comm } from "../comm.ts";
import type { CpuTensor } from "../../dtype.ts";
import { ringPass } from "./ring_pass.ts";

/** Reduces `work` (n equal blocks) so that block `comm.rank` holds the reduction over all ranks. */
export function reduceScatterRing(comm: Comm, call: Call, work: CpuTensor): Promise<void> {
  const n = comm.size;
  return ringPass(comm, call, work, { steps: n - 1, shift: -1, reduceSteps: n - 1 });
}
