/**
 * @module
 * Ring allreduce: a pipelined reduce-scatter (n-1 steps) followed by a pipelined allgather (n-1
 * steps), in place. Bandwidth-optimal; every element is reduced once, so all ranks agree bitwise.
 *
 * Cost: 2(n-1) * alpha + 2(n-1)/n * S * beta + (n-1)/n * S * gamma (reduce kernel).
 */

import type { Call, Comm } from "../comm.ts";
import type { CpuTensor } from "../../dtype.ts";
import { ringPass } from "./ring_pass.ts";

/** Sums (or reduces with `call.op`) `buf` across the ring, in place on every rank. */
export function allReduceRing(comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  const n = comm.size;
  return ringPass(comm, call, buf, { steps: 2 * (n - 1), shift: 0, reduceSteps: n - 1 });
}
