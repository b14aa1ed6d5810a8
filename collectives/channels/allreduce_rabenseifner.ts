/**
 * @module
 * Rabenseifner's allreduce: a reduce-scatter by recursive halving (in round k each rank swaps half of
 * its current range with rank XOR p/2^k and reduces the half it keeps) then an allgather by recursive
 * doubling (the same partners in reverse, each round doubling the range), over p = 2^floor(log2 n)
 * ranks. The n - p extra ranks first fold their input into a partner (rank i + p into rank i), sit
 * out, and get the result at the end. Each exchange is chunked, reduced frame by frame as it arrives.
 * Every element is reduced by one rank only, so all ranks agree bitwise.
 *
 * Cost: 2 log2 p * alpha + 2(p-1)/p * S * beta + (p-1)/p * S * gamma, plus for the fold
 * 2 * (alpha + S * beta) + S * gamma when n is not a power of two.
 */

import type { Call, Comm } from "../comm.ts";
import { type CpuTensor, sliceView } from "../../dtype.ts";
import { segment } from "../comm.ts";
import { recvChunks, sendChunks } from "./chunked.ts";

/** Frame numbers of round `round` start here, so that every round's frames are told apart. */
const frameBase = (round: number) => round << 24;

/** Reduces `buf` across all ranks in place, exchanging chunks of `chunkElems` elements. */
export async function allReduceRabenseifner(
  comm: Comm,
  call: Call,
  buf: CpuTensor,
  chunkElems: number,
): Promise<void> {
  const n = comm.size;
  if (n === 1 || buf.length === 0) return;
  const r = comm.rank;
  const step = Math.max(1, chunkElems);
  let p = 1;
  while (p * 2 <= n) p *= 2;
  const lg = Math.log2(p);

  // Fold: rank p + i hands its input to rank i and waits for the result.
  if (r >= p) {
    await sendChunks(comm, call, r - p, frameBase(0), buf, step);
    await recvChunks(comm, call, r - p, frameBase(2 * lg + 1), buf, step, false);
    return;
  }
  if (r + p < n) await recvChunks(comm, call, r + p, frameBase(0), buf, step, true);

  // Elements of segments [lo, hi) of the p-way split.
  const range = (lo: number, hi: number) => {
    const start = segment(buf.length, p, lo)[0];
    const end = hi >= p ? buf.length : segment(buf.length, p, hi)[0];
    return sliceView(buf, start, end - start);
  };

  // Reduce-scatter by recursive halving: afterwards rank r holds segment r reduced over all ranks.
  let lo = 0;
  let hi = p;
  for (let mask = p >> 1, round = 1; mask >= 1; mask >>= 1, round++) {
    const partner = r ^ mask;
    const mid = (lo + hi) >> 1;
    const [keepLo, keepHi, giveLo, giveHi] = r & mask ? [mid, hi, lo, mid] : [lo, mid, mid, hi];
    await Promise.all([
      sendChunks(comm, call, partner, frameBase(round), range(giveLo, giveHi), step),
      recvChunks(comm, call, partner, frameBase(round), range(keepLo, keepHi), step, true),
    ]);
    lo = keepLo;
    hi = keepHi;
  }

  // Allgather by recursive doubling: swap the ranges held so far with the same partners, reversed.
  for (let mask = 1, round = lg + 1; mask < p; mask <<= 1, round++) {
    const partner = r ^ mask;
    const size = hi - lo;
    const theirLo = partner & mask ? lo + size : lo - size;
    await Promise.all([
      sendChunks(comm, call, partner, frameBase(round), range(lo, hi), step),
      recvChunks(comm, call, partner, frameBase(round), range(theirLo, theirLo + size), step, false),
    ]);
    lo = Math.min(lo, theirLo);
    hi = lo + 2 * size;
  }

  if (r + p < n) await sendChunks(comm, call, r + p, frameBase(2 * lg + 1), buf, step);
}
