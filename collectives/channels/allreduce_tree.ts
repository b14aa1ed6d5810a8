/**
 * @module
 * Pipelined tree allreduce: chunks are reduced up a binary tree to rank 0 and sent back down the same
 * tree, a chunk going down as soon as the root has it, so both directions stream at once. Every
 * element is reduced once (at the tree's inner ranks), so all ranks agree bitwise.
 *
 * Why one binary tree and not NCCL's double binary tree: the double tree halves the bytes on each
 * rank's links, which pays off when links are the limit. On our hosts the CPUs are (every byte moved
 * or reduced costs a core, and ranks often outnumber cores), and there both trees move and reduce the
 * same total; the single tree keeps one ordered stream per link direction (the double tree would
 * interleave two trees' frames on shared links) and a plain binary tree caps any rank at two children.
 *
 * Cost: (2 * depth + k - 1) * (alpha + 3C * beta + 2C * gamma) for k chunks of C bytes, depth =
 * floor(log2 n) (an inner rank receives two children's chunks and its parent's, and sends as many).
 */

import type { Call, Comm } from "../comm.ts";
import type { CpuTensor } from "../../dtype.ts";
import { treePass } from "./tree_pass.ts";

/** Reduces `buf` across all ranks in place, in chunks of `chunkElems` elements. */
export function allReduceTree(comm: Comm, call: Call, buf: CpuTensor, chunkElems: number): Promise<void> {
  // The tree is rooted at rank 0 whatever the call (allreduce has no root: call.root is -1).
  return treePass(comm, call, buf, { up: true, down: true, chunkElems, keepInput: false });
}
