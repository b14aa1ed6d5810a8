/**
 * @module
 * Deterministic reduce: a rank-ordered reduce-scatter (see reducescatter_ordered.ts), then every rank
 * sends its folded segment to the root. Only the root's buffer changes.
 *
 * Cost: (n-1) * k * alpha + 2(n-1)/n * S * beta at the root + (n-1)/n * S * gamma for k chunks per
 * segment.
 */

import { type Call, type Comm, segment } from "../comm.ts";
import { type CpuTensor, sliceView } from "../../dtype.ts";
import { recvChunks, sendChunks } from "./chunked.ts";
import { reduceScatterOrdered } from "./reducescatter_ordered.ts";

/** Frames of the gather to the root are numbered from here (after the reduce-scatter's). */
const GATHER_FRAME = 1 << 24;

/** Reduces `buf` from every rank into `buf` on `call.root`, folding in rank order. */
export async function reduceOrdered(
  comm: Comm,
  call: Call,
  buf: CpuTensor,
  chunkElems: number,
): Promise<void> {
  const n = comm.size;
  if (n === 1) return;
  const r = comm.rank;
  const root = call.root;
  const seg = (q: number) => {
    const [start, length] = segment(buf.length, n, q);
    return sliceView(buf, start, length);
  };
  // The root folds its segment in place; the others into scratch, leaving their input unchanged.
  const out = r === root ? seg(r) : comm.scratch(2, buf, seg(r).length);
  await reduceScatterOrdered(comm, call, buf, out, chunkElems);
  if (r !== root) return sendChunks(comm, call, root, GATHER_FRAME, out, Math.max(1, chunkElems));
  await Promise.all(
    Array.from({ length: n }, (_, q) => q)
      .filter((q) => q !== root)
      .map((q) => recvChunks(comm, call, q, GATHER_FRAME, seg(q), Math.max(1, chunkElems), false)),
  );
}
