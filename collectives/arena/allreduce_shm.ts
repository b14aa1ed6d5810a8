/**
 * @module
 * Same-host allreduce straight through the shared arena, with no channel in between. Tiny inputs
 * (up to 4 KiB) travel in the call slot: publish, then read every peer's slot and reduce in
 * rank order. Larger ones go through a chunk pipeline: each rank hands over the slices of the chunk
 * the others reduce, reduces its own slice over all ranks (its own input read in place), and fetches
 * the others' results, so each byte is copied about once each way.
 *
 * Cost (tiny): one cache-line handoff per peer. (large): 2(n-1)/n S + S/n copies and (n-1)/n S
 * reduce per rank.
 */

import type { Call } from "../comm.ts";
import { bytesOf, type CpuTensor, viewLike } from "../../dtype.ts";
import { reduceInto, reducePath } from "../kernels/mod.ts";
import { chunkSlices } from "./arena_chunk.ts";
import { type Arena, type Fingerprint, W, type WaitContext } from "./shm_arena.ts";

type PlainNumberArray = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array | Int8Array;

/** Typed arrays whose elements are plain numbers and whose sums `+=` computes exactly (not f16/bf16, i64). */
function isPlainNumberArray(buf: CpuTensor): buf is PlainNumberArray {
  return buf instanceof Float32Array || buf instanceof Float64Array || buf instanceof Int32Array ||
    buf instanceof Uint32Array || buf instanceof Uint8Array || buf instanceof Int8Array;
}

/**
 * Tiny allreduce through the per-rank call slots; the result is bitwise the same on every rank.
 * Synchronous (returns undefined) when every peer is on time, else a promise.
 */
export function allReduceShmSmall(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  buf: CpuTensor,
  ctx: WaitContext,
): Promise<void> | undefined {
  // begin() publishes our input with the fingerprint and returns once every peer's is there too.
  const p = a.begin(fp, ctx, buf);
  if (typeof p !== "number") return p.then((parity) => reduceSlots(a, call, buf, parity));
  reduceSlots(a, call, buf, p);
  return undefined;
}

/**
 * Payloads from this many bytes on are reduced by the kernels: OpenBLAS (f32/f64 sums) reading the
 * peers' slots in place, the others on a bulk copy of each slot (see `Arena.staged`); smaller sums are
 * read from the shared slots element by element. Letting OpenBLAS take 256 B (64 floats) too measured
 * the same as the loop (2 ranks, 3 launches each, 2026-12-07 16:08 UTC: engine 0.41-0.67 vs 0.43-0.63 us).
 */
const STAGE_BYTES = 512;

/** Reduces every rank's slot of `parity` into `buf`, in rank order 0, 1, ..., n-1. */
function reduceSlots(a: Arena, call: Call, buf: CpuTensor, parity: number): void {
  const op = call.op ?? "sum";
  const r = a.rank;
  const len = buf.length;
  const dtype = call.dtype;
  if (buf.byteLength >= STAGE_BYTES && reducePath(dtype, op, len) === "blas") {
    // OpenBLAS reads the peers' slots in place (saxpy loads whole lines): no staging copy. Rank order
    // kept (dst holds rank 0's input, src the next rank's), so every rank adds the same operands in
    // the same order and the bits agree, NaN payloads included.
    if (r !== 0) (buf as Float32Array).set(a.slotExact(buf as Float32Array, 0, parity));
    for (let q = 1; q < a.size; q++) reduceInto(dtype, op, buf, a.slotExact(buf as Float32Array, q, parity));
    return;
  }
  if (
    buf.byteLength < STAGE_BYTES && (op === "sum" || op === "avg" || op === "premul_sum") &&
    isPlainNumberArray(buf)
  ) {
    // The common case without allocating: JavaScript numbers hold every f32/f64 sum exactly
    // before the store rounds it (to f32, or wraps integers), as the general kernels do.
    if (r !== 0) {
      const s0 = a.slotView(buf, 0, parity);
      for (let i = 0; i < len; i++) buf[i] = s0[i];
    }
    for (let q = 1; q < a.size; q++) {
      const s = a.slotView(buf, q, parity);
      for (let i = 0; i < len; i++) buf[i] += s[i];
    }
    return;
  }
  // Other kernels: every peer's slot copied in bulk (faster than reading its cache lines one element
  // at a time from a JS loop), then reduced on local memory. This rank's own input is read from its slot.
  if (r !== 0) bytesOf(buf).set(new Uint8Array(a.buffer, a.payload(0, parity), buf.byteLength));
  for (let q = 1; q < a.size; q++) {
    const src = q === r
      ? viewLike(buf, a.buffer, a.payload(q, parity), len)
      : a.staged(buf, q, parity).subarray(0, len);
    reduceInto(dtype, op, buf, src as CpuTensor);
  }
}

/** Chunked allreduce through the arena's double-buffered chunk buffers. */
export async function allReduceShmChunks(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  buf: CpuTensor,
  ctx: WaitContext,
): Promise<void> {
  await a.handshake(fp, ctx);
  const op = call.op ?? "sum";
  const elem = buf.BYTES_PER_ELEMENT;
  const step = a.chunkElems(elem);
  const n = a.size;
  const r = a.rank;
  for (let off = 0; off < buf.length; off += step) {
    const len = Math.min(step, buf.length - off);
    const k = a.chunks++;
    const s = k & 1;
    const { slot, mine } = chunkSlices(a, buf, off, len, s);
    // Buffers of parity s were last used by chunk k-2: everyone must be done with them.
    await a.waitAll(W.done, k - 1, ctx);
    // 1. Hand over the slices the other ranks reduce (this rank's own slice never leaves it).
    for (let j = 0; j < n; j++) if (j !== r) bytesOf(slot(r, j)).set(bytesOf(mine(j)));
    a.publish(W.in, k + 1);
    await a.waitAll(W.in, k + 1, ctx);
    // 2. Reduce this rank's slice over all ranks in rank order, leaving the result both in this
    //    rank's array and in rank 0's buffer, where the others fetch it.
    if (r === 0) {
      const acc = mine(0);
      for (let q = 1; q < n; q++) reduceInto(call.dtype, op, acc, slot(q, 0));
      bytesOf(slot(0, 0)).set(bytesOf(acc));
    } else {
      const acc = slot(0, r);
      for (let q = 1; q < n; q++) reduceInto(call.dtype, op, acc, q === r ? mine(r) : slot(q, r));
      bytesOf(mine(r)).set(bytesOf(acc));
    }
    a.publish(W.red, k + 1);
    await a.waitAll(W.red, k + 1, ctx);
    // 3. Fetch the other ranks' reduced slices.
    for (let j = 0; j < n; j++) if (j !== r) bytesOf(mine(j)).set(bytesOf(slot(0, j)));
    a.publish(W.done, k + 1);
  }
}
