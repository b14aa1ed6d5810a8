/**
 * @module
 * Same-host allreduce straight through the shared arena, with no channel in between. Tiny inputs
 * (up to 112 bytes) travel in the call slot: publish, then read every peer's slot and reduce in
 * rank order. Larger ones go through a chunk pipeline: copy in, each rank reduces its 1/n slice of
 * the chunk across all n inputs into rank 0's buffer, everyone copies the whole reduced chunk out.
 *
 * Cost (tiny): one cache-line handoff per peer. (large): 2 S copies + (n-1)/n S reduce per rank.
 */

import { type Call, segment } from "./comm.ts";
import { bytesOf, type CpuTensor, sliceView } from "./dtype.ts";
import { reduceInto } from "./reduce/mod.ts";
import { type Arena, type Fingerprint, SMALL_PAYLOAD, W, type WaitContext } from "./shm_arena.ts";

function view<T extends CpuTensor>(like: T, buffer: ArrayBuffer, byteOffset: number, length: number): T {
  const ctor = like.constructor as new (b: ArrayBuffer, o: number, l: number) => T;
  return new ctor(buffer, byteOffset, length);
}

/** Whether `buf` fits the tiny path. */
export function fitsSmallSlot(buf: CpuTensor): boolean {
  return buf.byteLength <= SMALL_PAYLOAD;
}

/** Tiny allreduce through the per-rank call slots; the result is bitwise the same on every rank. */
export function allReduceShmSmall(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  buf: CpuTensor,
  ctx: WaitContext,
): void {
  // begin() publishes our input with the fingerprint and returns once every peer's is there too.
  const p = a.begin(fp, ctx, bytesOf(buf));
  const op = call.op ?? "sum";
  // Reduce in rank order 0, 1, ..., n-1 on every rank.
  if (a.rank !== 0) bytesOf(buf).set(new Uint8Array(a.buffer, a.payload(0, p), buf.byteLength));
  for (let q = 1; q < a.size; q++) {
    reduceInto(call.dtype, op, buf, view(buf, a.buffer, a.payload(q, p), buf.length));
  }
}

/** Chunked allreduce through the arena's double-buffered chunk buffers. */
export function allReduceShmChunks(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  buf: CpuTensor,
  ctx: WaitContext,
): void {
  a.begin(fp, ctx);
  const op = call.op ?? "sum";
  const elem = buf.BYTES_PER_ELEMENT;
  const step = Math.max(1, Math.floor(a.chunkBytes / elem));
  const n = a.size;
  for (let off = 0; off < buf.length; off += step) {
    const len = Math.min(step, buf.length - off);
    const k = a.chunks++;
    const s = k & 1;
    // Buffers of parity s were last used by chunk k-2: everyone must be done with it.
    a.waitAll(W.done, k - 1, ctx);
    new Uint8Array(a.buffer, a.inBuf(a.rank, s), len * elem).set(bytesOf(sliceView(buf, off, len)));
    a.publish(W.in, k + 1);
    a.waitAll(W.in, k + 1, ctx);
    // Reduce this rank's slice of the chunk into rank 0's input, in rank order: rank 0's buffer
    // then holds the whole reduced chunk, with no separate output buffer to fill.
    const [ps, pl] = segment(len, n, a.rank);
    if (pl > 0) {
      const acc = view(buf, a.buffer, a.inBuf(0, s) + ps * elem, pl);
      for (let q = 1; q < n; q++) {
        reduceInto(call.dtype, op, acc, view(buf, a.buffer, a.inBuf(q, s) + ps * elem, pl));
      }
    }
    a.publish(W.red, k + 1);
    a.waitAll(W.red, k + 1, ctx);
    bytesOf(sliceView(buf, off, len)).set(new Uint8Array(a.buffer, a.inBuf(0, s), len * elem));
    a.publish(W.done, k + 1);
  }
}
