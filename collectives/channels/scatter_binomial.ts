/**
 * @module
 * Binomial-tree scatter for small blocks: the root sends each child the blocks of its whole subtree,
 * and every rank passes on what is not its own, so all n ranks are reached in ceil(log2 n) rounds.
 * Blocks are equal-sized.
 *
 * Cost: ceil(log2 n) * alpha + (n-1) * S * beta for blocks of S bytes (the root's share; inner
 * ranks forward their subtree's blocks once more).
 */

import { binomialSubtree } from "./binomial_subtree.ts";
import type { Call, Comm } from "../comm.ts";
import { bytesOf, type CpuTensor, sliceView } from "../../dtype.ts";

/**
 * Fills `output` with block `rank` of the root's `blocks`. Every block and output has
 * `output.length` elements; `blocks` is only read on the root.
 */
export async function scatterBinomial(
  comm: Comm,
  call: Call,
  output: CpuTensor,
  blocks: readonly CpuTensor[] | null,
): Promise<void> {
  const n = comm.size;
  const root = call.root;
  const len = output.length;
  // This rank receives the blocks of relative ranks [v, v + span): its subtree.
  const { v, low, span, abs } = binomialSubtree(comm.rank, root, n);
  const tmp = span === 1 ? output : comm.scratch(0, output, span * len);
  if (v === 0) {
    for (let rel = 0; rel < n; rel++) {
      bytesOf(sliceView(tmp, rel * len, len)).set(bytesOf(blocks![abs(rel)]));
    }
  } else {
    await comm.recv(abs(v - low), call, 0, tmp);
  }
  const children: Promise<void>[] = [];
  for (let mask = 1; mask < low && v + mask < n; mask <<= 1) {
    const count = Math.min(mask, n - v - mask);
    children.push(comm.send(abs(v + mask), call, 0, sliceView(tmp, mask * len, count * len)));
  }
  await Promise.all(children);
  if (span > 1) bytesOf(output).set(bytesOf(sliceView(tmp, 0, len)));
}
