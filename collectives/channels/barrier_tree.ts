/**
 * @module
 * Tree barrier: every rank hears from its children in the binary tree rooted at rank 0 (tree_pass.ts's
 * tree), tells its parent, then waits for its parent's release and passes it to its children. A rank
 * talks to at most three peers, so a lazy group that runs it opens n - 1 links in all, where the
 * dissemination barrier opens one a round (n log2 n); it takes twice the rounds.
 *
 * Cost: 2 * floor(log2 n) * alpha.
 */

import type { Call, Comm } from "../comm.ts";
import { binaryTree } from "./tree_pass.ts";

const EMPTY = new Uint8Array(0);

/** Returns once every rank of the group has entered the barrier. */
export async function barrierTree(comm: Comm, call: Call): Promise<void> {
  if (comm.size === 1) return;
  const { parent, children } = binaryTree(comm.rank, comm.size, 0);
  // Chunk index 0 goes up (arrived), 1 comes down (released).
  await Promise.all(children.map((c) => comm.recv(c, call, 0, EMPTY)));
  if (parent >= 0) {
    await comm.send(parent, call, 0, EMPTY);
    await comm.recv(parent, call, 1, EMPTY);
  }
  await Promise.all(children.map((c) => comm.send(c, call, 1, EMPTY)));
}
