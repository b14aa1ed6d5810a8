/**
 * @module
 * Binomial-tree gather for small blocks: in ceil(log2 n) rounds each rank passes the blocks of its
 * subtree to its parent, so the root hears from log2 n ranks instead of n-1. Blocks are equal-sized.
 *
 * Cost: ceil(log2 n) * alpha + (n-1) * S * beta for blocks of S bytes (the root's share; inner
 * ranks forward their subtree's blocks once more).
 */

import { binomialSubtree } from "./binomial_subtree.ts";
import type { Call, Comm } from "../comm.ts";
import { bytesOf, type CpuTensor, sliceView } from "../../dtype.ts";

/**
 * Sends `input` towards `call.root`; on the root, fills `blocks[p]` with rank p's input. Every
 * block and input has `input.length` elements; `blocks` is only read on the root.
 */
export async function gatherBinomial(
  comm: Comm,
  call: Call,
  input: CpuTensor,
  blocks: readonly CpuTensor[] | null,
): Promise<void> {
  const n = comm.size;
  const root = call.root;
  const len = input.length;
  // This rank collects relative ranks [v, v + span): its subtree.
  const { v, low, span, abs } = binomialSubtree(comm.rank, root, n);
  // The subtree's blocks, in relative order; the scratch buffer belongs to the running collective.
  const tmp = span === 1 ? input : comm.scratch(0, input, span * len);
  if (span > 1) bytesOf(sliceView(tmp, 0, len)).set(bytesOf(input));
  const children: Promise<void>[] = [];
  for (let mask = 1; mask < low && v + mask < n; mask <<= 1) {
    const count = Math.min(mask, n - v - mask);
    children.push(comm.recv(abs(v + mask), call, 0, sliceView(tmp, mask * len, count * len)));
  }
  await Promise.all(children);
  if (v !== 0) return await comm.send(abs(v - low), call, 0, tmp);
  for (let rel = 0; rel < n; rel++) {
    bytesOf(blocks![abs(rel)]).set(bytesOf(sliceView(tmp, rel * len, len)));
  }
}
