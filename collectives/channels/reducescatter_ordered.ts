/**
 * @module
 * Rank-ordered reduce-scatter, the core of deterministic mode: every rank sends segment q of its input
 * to rank q and receives its own segment from every rank, chunk by chunk, then folds each chunk in
 * rank order, ((x0 op x1) op x2) ... op x(n-1). The result depends only on the inputs, never on the
 * algorithm, the chunk size or the order in which frames arrive; the shared-arena allreduce folds in
 * the same order, so it gives the same bits.
 *
 * Cost: (n-1) * alpha per chunk round + (n-1)/n * S * beta + (n-1)/n * S * gamma: the ring's bytes,
 * with every rank talking to every other; scratch for n-1 chunks.
 */

import { type Call, type Comm, segment } from "../comm.ts";
import { bytesOf, type CpuTensor, sliceView } from "../../dtype.ts";
import { sendChunks } from "./chunked.ts";
import { reduceInto } from "../kernels/mod.ts";

/**
 * Folds segment `comm.rank` of `input` (the `comm.size`-way split of {@link segment}) over all ranks
 * in rank order into `out` (that segment's length; it may be the segment itself). `input` is only
 * read, apart from that aliasing. Frames are numbered from `frame`.
 */
export async function reduceScatterOrdered(
  comm: Comm,
  call: Call,
  input: CpuTensor,
  out: CpuTensor,
  chunkElems: number,
  frame = 0,
): Promise<void> {
  const n = comm.size;
  const r = comm.rank;
  const step = Math.max(1, chunkElems);
  const seg = (q: number) => {
    const [start, length] = segment(input.length, n, q);
    return sliceView(input, start, length);
  };
  const mine = seg(r);
  const op = call.op ?? "sum";
  if (n === 1) {
    if (out !== mine) bytesOf(out).set(bytesOf(mine));
    return;
  }
  const peers = Array.from({ length: n }, (_, q) => q).filter((q) => q !== r);
  // One scratch chunk per rank (own slot unused), so that the fold can read them in rank order.
  const stride = Math.min(step, Math.max(1, mine.length));
  const slots = comm.scratch(1, input, n * stride);
  const receive = async () => {
    for (let off = 0, j = frame; off < mine.length; off += step, j++) {
      const len = Math.min(step, mine.length - off);
      const x = (q: number) => q === r ? sliceView(mine, off, len) : sliceView(slots, q * stride, len);
      await Promise.all(peers.map((q) => comm.recv(q, call, j, x(q))));
      const dst = sliceView(out, off, len);
      if (r === 0) {
        // x0 is this rank's own chunk: fold into the output directly.
        if (out !== mine) bytesOf(dst).set(bytesOf(x(0)));
        for (let q = 1; q < n; q++) reduceInto(call.dtype, op, dst, x(q));
      } else {
        const acc = x(0);
        for (let q = 1; q < n; q++) reduceInto(call.dtype, op, acc, x(q));
        bytesOf(dst).set(bytesOf(acc));
      }
    }
  };
  await Promise.all([...peers.map((q) => sendChunks(comm, call, q, frame, seg(q), step)), receive()]);
}
