/**
 * @module
 * Chunked point-to-point transfers for the algorithms that exchange whole ranges with one peer at a
 * time (Rabenseifner, the rank-ordered reduction): a range goes as frames of at most `step` elements,
 * numbered from `frame`, and the receiver may reduce each frame as it arrives instead of waiting for
 * the whole range.
 */

import type { Call, Comm } from "../comm.ts";
import { type CpuTensor, sliceView } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";

/** Sends `data` to `peer` as frames `frame`, `frame + 1`, ... of at most `step` elements. */
export async function sendChunks(
  comm: Comm,
  call: Call,
  peer: number,
  frame: number,
  data: CpuTensor,
  step: number,
): Promise<void> {
  for (let off = 0, j = frame; off < data.length; off += step, j++) {
    await comm.send(peer, call, j, sliceView(data, off, Math.min(step, data.length - off)));
  }
}

/**
 * Receives frames `frame`, `frame + 1`, ... from `peer` into `into`; with `reduce`, each frame lands
 * in scratch slot `slot` and is reduced into `into` (`into = into op frame`).
 */
export async function recvChunks(
  comm: Comm,
  call: Call,
  peer: number,
  frame: number,
  into: CpuTensor,
  step: number,
  reduce: boolean,
  slot = 0,
): Promise<void> {
  const tmp = reduce ? comm.scratch(slot, into, Math.min(step, into.length)) : null;
  for (let off = 0, j = frame; off < into.length; off += step, j++) {
    const dst = sliceView(into, off, Math.min(step, into.length - off));
    if (!tmp) {
      await comm.recv(peer, call, j, dst);
      continue;
    }
    const got = sliceView(tmp, 0, dst.length);
    await comm.recv(peer, call, j, got);
    reduceInto(call.dtype, call.op ?? "sum", dst, got);
  }
}
