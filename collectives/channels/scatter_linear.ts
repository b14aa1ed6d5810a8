/**
 * @module
 * Linear scatter: the root sends each rank its block directly, all sends at once. Blocks may differ
 * in size (the object collectives rely on that).
 *
 * Cost: alpha + (n-1) * S * beta, all on the root's links, for blocks of S bytes.
 */

import type { Call, Comm } from "../comm.ts";
import { bytesOf, type CpuTensor } from "../../dtype.ts";

/**
 * Fills `output` with block `rank` of the root's `blocks`. `blocks` is only read on the root; each
 * block must have its receiver's output size.
 */
export async function scatterLinear(
  comm: Comm,
  call: Call,
  output: CpuTensor,
  blocks: readonly CpuTensor[] | null,
): Promise<void> {
  const root = call.root;
  if (comm.rank !== root) return await comm.recv(root, call, 0, output);
  const mine = bytesOf(blocks![root]);
  const dst = bytesOf(output);
  if (mine.buffer !== dst.buffer || mine.byteOffset !== dst.byteOffset) dst.set(mine);
  await Promise.all(
    blocks!.map((b, p) => p === root ? undefined : comm.send(p, call, 0, b)),
  );
}
