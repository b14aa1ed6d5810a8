/**
 * @module
 * Linear gather: every rank sends its block straight to the root, which receives them all at once.
 * Blocks may differ in size (the object collectives rely on that).
 *
 * Cost: alpha + (n-1) * S * beta, all on the root's links, for blocks of S bytes.
 */

import type { Call, Comm } from "../comm.ts";
import { bytesOf, type CpuTensor } from "../../dtype.ts";

/**
 * Sends `input` to `call.root`; on the root, fills `blocks[p]` with rank p's input (`blocks[root]`
 * with its own). `blocks` is only read on the root, and each block must have its sender's size.
 */
export async function gatherLinear(
  comm: Comm,
  call: Call,
  input: CpuTensor,
  blocks: readonly CpuTensor[] | null,
): Promise<void> {
  const root = call.root;
  if (comm.rank !== root) return await comm.send(root, call, 0, input);
  const mine = bytesOf(blocks![root]);
  const src = bytesOf(input);
  if (mine.buffer !== src.buffer || mine.byteOffset !== src.byteOffset) mine.set(src);
  await Promise.all(
    blocks!.map((b, p) => p === root ? undefined : comm.recv(p, call, 0, b)),
  );
}
