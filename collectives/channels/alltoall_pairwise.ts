/**
 * @module
 * Pairwise-exchange all-to-all: at step k (1..n-1) each rank sends its block for rank r+k and
 * receives the block from rank r-k, both at once, so every link is busy once per step and no rank
 * is swamped. Blocks may have any size, zero included.
 *
 * Cost: (n-1) * alpha + (n-1)/n * S * beta for S bytes sent per rank (equal blocks).
 */

import type { Call, Comm } from "../comm.ts";
import { bytesOf, type CpuTensor, sliceView } from "../../dtype.ts";

/** Where each peer's block lies: `starts[p]` and `lengths[p]`, in elements. */
export interface Blocks {
  /** First element of peer p's block. */
  starts: readonly number[];
  /** Elements in peer p's block. */
  lengths: readonly number[];
}

/**
 * Sends block p of `input` (as `send` lays it out) to rank p and receives rank p's block for this
 * rank into block p of `output` (as `recv` lays it out). This rank's own blocks must have equal length.
 */
export async function allToAllPairwise(
  comm: Comm,
  call: Call,
  output: CpuTensor,
  recv: Blocks,
  input: CpuTensor,
  send: Blocks,
): Promise<void> {
  const n = comm.size;
  const r = comm.rank;
  const block = (t: CpuTensor, b: Blocks, p: number) => sliceView(t, b.starts[p], b.lengths[p]);
  bytesOf(block(output, recv, r)).set(bytesOf(block(input, send, r)));
  for (let k = 1; k < n; k++) {
    const dst = (r + k) % n;
    const src = (r - k + n) % n;
    await Promise.all([
      comm.send(dst, call, k, block(input, send, dst)),
      comm.recv(src, call, k, block(output, recv, src)),
    ]);
  }
}
