/**
 * @module
 * Pipelined binary-tree broadcast: the root's chunks flow down a binary tree, each rank forwarding a
 * chunk to its (up to two) children as soon as it has arrived. Between the binomial tree (log2 n
 * rounds of the whole message) and the chain (n - 1 + k - 1 chunk steps): depth + k - 1 chunk steps.
 *
 * Cost: (depth + k - 1) * (alpha + 2C * beta) for k chunks of C bytes, depth = floor(log2 n).
 */

import type { Call, Comm } from "../comm.ts";
import type { CpuTensor } from "../../dtype.ts";
import { treePass } from "./tree_pass.ts";

/** Broadcasts `buf` from `call.root` to every rank, in place, in chunks of `chunkElems` elements. */
export function broadcastTree(comm: Comm, call: Call, buf: CpuTensor, chunkElems: number): Promise<void> {
  return treePass(comm, call, buf, { up: false, down: true, chunkElems, keepInput: true });
}
