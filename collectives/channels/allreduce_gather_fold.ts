/**
 * @module
 * Deterministic allreduce for small messages: every rank gathers every rank's whole input (Bruck's
 * allgather: in round k it passes the blocks it holds to rank - 2^k and gets as many from rank + 2^k,
 * so ceil(log2 n) rounds suffice for any n) and folds them in rank order, ((x0 op x1) op x2) ...,
 * which gives exactly the bits of the rank-ordered reduce-scatter (allreduce_ordered.ts) in
 * recursive doubling's number of rounds.
 *
 * Cost: ceil(log2 n) * alpha + (n-1) * S * beta + (n-1) * S * gamma; scratch of n * S bytes.
 */

import type { Call, Comm } from "../comm.ts";
import { bytesOf, type CpuTensor, sliceView } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";

/** Reduces `buf` across all ranks in place, folding every rank's input in rank order. */
export async function allReduceGatherFold(comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  const n = comm.size;
  const len = buf.length;
  if (n === 1 || len === 0) return;
  const r = comm.rank;
  // Block i of `held` is the input of rank (r + i) mod n.
  const held = comm.scratch(0, buf, n * len);
  const block = (i: number, count = 1) => sliceView(held, i * len, count * len);
  bytesOf(block(0)).set(bytesOf(buf));
  for (let have = 1, round = 0; have < n; have *= 2, round++) {
    const count = Math.min(have, n - have);
    await Promise.all([
      comm.send((r - have + n) % n, call, round, block(0, count)),
      comm.recv((r + have) % n, call, round, block(have, count)),
    ]);
  }
  const input = (q: number) => block((q - r + n) % n);
  bytesOf(buf).set(bytesOf(input(0)));
  for (let q = 1; q < n; q++) reduceInto(call.dtype, call.op ?? "sum", buf, input(q));
}
