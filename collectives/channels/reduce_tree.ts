/**
 * @module
 * Pipelined binary-tree reduce: chunks are reduced up a binary tree to the root, each inner rank
 * adding its own chunk to its children's and passing the partial result up at once. Only the root's
 * buffer changes; the others reduce into scratch chunks.
 *
 * Cost: (depth + k - 1) * (alpha + 2C * beta + 2C * gamma) for k chunks of C bytes, depth =
 * floor(log2 n).
 */

import type { Call, Comm } from "../comm.ts";
import type { CpuTensor } from "../../dtype.ts";
import { treePass } from "./tree_pass.ts";

/** Reduces `buf` from every rank into `buf` on `call.root`, in chunks of `chunkElems` elements. */
export function reduceTree(comm: Comm, call: Call, buf: CpuTensor, chunkElems: number): Promise<void> {
  return treePass(comm, call, buf, { up: true, down: false, chunkElems, keepInput: true });
}
