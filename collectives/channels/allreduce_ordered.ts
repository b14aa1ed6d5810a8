/**
 * @module
 * Deterministic allreduce: a rank-ordered reduce-scatter (every element folded as
 * ((x0 op x1) op x2) ... op x(n-1), see reducescatter_ordered.ts) then a ring allgather. The bits
 * depend only on the inputs: not on the algorithm a non-deterministic group would pick, the chunk
 * size, the transport or the arrival order.
 *
 * Cost: (n-1) * k * alpha + 2(n-1)/n * S * beta + (n-1)/n * S * gamma for k chunks per segment: the
 * ring's bytes, but every rank exchanges with every other in the first half.
 */

import { type Call, type Comm, segment } from "../comm.ts";
import { type CpuTensor, sliceView } from "../../dtype.ts";
import { allGatherRing } from "./allgather_ring.ts";
import { reduceScatterOrdered } from "./reducescatter_ordered.ts";

/** Reduces `buf` across all ranks in place, folding in rank order, in chunks of `chunkElems`. */
export async function allReduceOrdered(
  comm: Comm,
  call: Call,
  buf: CpuTensor,
  chunkElems: number,
): Promise<void> {
  if (comm.size === 1) return;
  const [start, length] = segment(buf.length, comm.size, comm.rank);
  await reduceScatterOrdered(comm, call, buf, sliceView(buf, start, length), chunkElems);
  await allGatherRing(comm, call, buf);
}
