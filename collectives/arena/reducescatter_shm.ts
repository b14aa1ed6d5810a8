/**
 * @module
 * Same-host reduceScatter on the shared arena. Tiny inputs (up to 4 KiB) travel whole in the
 * call slots; larger ones go in pieces: each rank hands over its pieces of the other ranks' blocks
 * through its chunk buffer, and reduces its own block in rank order, reading its own input in place.
 *
 * Cost (large): (n-1)/n S copied in and (n-1)/n S reduced per rank (S = the whole input).
 */

import type { Call } from "../comm.ts";
import { bytesOf, type CpuTensor, type ReduceOp, sliceView, viewLike } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";
import { type Arena, type Fingerprint, SMALL_PAYLOAD, W, type WaitContext } from "./shm_arena.ts";

/**
 * Leaves block `rank` (of `output.length` elements) of the reduction of every rank's `input` in
 * `output`; `input` is not modified. Every element is reduced in rank order 0, 1, ..., n-1.
 */
export async function reduceScatterShm(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  output: CpuTensor,
  input: CpuTensor,
  ctx: WaitContext,
): Promise<void> {
  const op: ReduceOp = call.op ?? "sum";
  const m = output.length;
  const n = a.size;
  const r = a.rank;
  if (input.byteLength <= SMALL_PAYLOAD) {
    const p = a.begin(fp, ctx, input);
    const parity = typeof p === "number" ? p : await p;
    const block = (q: number) => sliceView(q === r ? input : a.slotView(input, q, parity), r * m, m);
    bytesOf(output).set(bytesOf(block(0)));
    for (let q = 1; q < n; q++) reduceInto(call.dtype, op, output, block(q));
    return;
  }
  await a.handshake(fp, ctx);
  const elem = input.BYTES_PER_ELEMENT;
  const piece = Math.max(1, Math.floor(a.chunkElems(elem) / n));
  for (let off = 0; off < m; off += piece) {
    const len = Math.min(piece, m - off);
    const k = a.chunks++;
    const s = k & 1;
    const slot = (q: number, j: number) => viewLike(input, a.buffer, a.inBuf(q, s) + j * piece * elem, len);
    const mine = (j: number) => sliceView(input, j * m + off, len);
    await a.waitAll(W.done, k - 1, ctx);
    for (let j = 0; j < n; j++) if (j !== r) bytesOf(slot(r, j)).set(bytesOf(mine(j)));
    a.publish(W.in, k + 1);
    await a.waitAll(W.in, k + 1, ctx);
    const out = sliceView(output, off, len);
    bytesOf(out).set(bytesOf(r === 0 ? mine(r) : slot(0, r)));
    for (let q = 1; q < n; q++) reduceInto(call.dtype, op, out, q === r ? mine(r) : slot(q, r));
    a.publish(W.done, k + 1);
  }
}
