/**
 * @module
 * Ring allgather: each rank's block travels around the ring, received straight into place in the
 * output and forwarded chunk by chunk.
 *
 * Cost: (n-1) * alpha + (n-1)/n * S * beta for an output of S bytes.
 */

import type { Call, Comm } from "../comm.ts";
import type { CpuTensor } from "../../dtype.ts";
import { ringPass } from "./ring_pass.ts";

/** Fills `output` (n equal blocks) with every rank's block; this rank's block must already be in place. */
export function allGatherRing(comm: Comm, call: Call, output: CpuTensor): Promise<void> {
  return ringPass(comm, call, output, { steps: comm.size - 1, shift: 0, reduceSteps: 0 });
}
