/**
 * @module
 * Same-host reduce (to a root) on the shared arena. Tiny inputs (up to 4 KiB) travel in the call
 * slots and the root reduces them. Larger ones go chunk by chunk: every rank reduces one slice of the
 * chunk over all ranks (in rank order, in rank 0's chunk buffer, its own input read in place), then
 * the root copies the reduced slices out. Only the root's tensor changes.
 *
 * Cost (large): about S copied in and S/n reduced per rank, S copied out by the root.
 */

import type { Call } from "../comm.ts";
import { bytesOf, type CpuTensor, type ReduceOp, sliceView } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";
import { chunkSlices } from "./arena_chunk.ts";
import { type Arena, type Fingerprint, SMALL_PAYLOAD, W, type WaitContext } from "./shm_arena.ts";

/** Reduces every rank's `buf` into `buf` on `call.root`; the other ranks' `buf` is left as it was. */
export async function reduceShm(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  buf: CpuTensor,
  ctx: WaitContext,
): Promise<void> {
  const op: ReduceOp = call.op ?? "sum";
  const root = call.root;
  const n = a.size;
  const r = a.rank;
  if (buf.byteLength <= SMALL_PAYLOAD) {
    const p = a.begin(fp, ctx, buf);
    const parity = typeof p === "number" ? p : await p;
    if (r !== root) return;
    // Rank order: start from rank 0's input (the root's own is still in `buf` and in its slot).
    bytesOf(buf).set(bytesOf(sliceView(a.slotView(buf, 0, parity), 0, buf.length)));
    for (let q = 1; q < n; q++) {
      reduceInto(call.dtype, op, buf, sliceView(a.slotView(buf, q, parity), 0, buf.length));
    }
    return;
  }
  await a.handshake(fp, ctx);
  const elem = buf.BYTES_PER_ELEMENT;
  const step = a.chunkElems(elem);
  for (let off = 0; off < buf.length; off += step) {
    const len = Math.min(step, buf.length - off);
    const k = a.chunks++;
    const s = k & 1;
    const { slot, mine } = chunkSlices(a, buf, off, len, s);
    await a.waitAll(W.done, k - 1, ctx);
    // 1. Hand over the slices others reduce; rank 0 hands over all of them, since its buffer is
    //    where every slice is reduced.
    for (let j = 0; j < n; j++) if (j !== r || r === 0) bytesOf(slot(r, j)).set(bytesOf(mine(j)));
    a.publish(W.in, k + 1);
    await a.waitAll(W.in, k + 1, ctx);
    // 2. Reduce this rank's slice in rank order into rank 0's buffer.
    const acc = slot(0, r);
    for (let q = 1; q < n; q++) reduceInto(call.dtype, op, acc, q === r ? mine(r) : slot(q, r));
    a.publish(W.red, k + 1);
    // 3. The root fetches every reduced slice.
    if (r === root) {
      await a.waitAll(W.red, k + 1, ctx);
      for (let j = 0; j < n; j++) bytesOf(mine(j)).set(bytesOf(slot(0, j)));
    }
    a.publish(W.done, k + 1);
  }
}
