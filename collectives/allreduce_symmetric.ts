/**
 * @module
 * Allreduce on symmetric memory (`pg.alloc` buffers): every rank's array is mapped in every process,
 * so rank r reduces slice r of all n arrays in one pass and writes the result into all n arrays.
 * No copy in, no copy out; two arena handshakes (inputs ready, results written).
 *
 * Cost: 2 handshakes + one pass reading n*S/n and writing n*S/n bytes per rank.
 */

import type { Call } from "./comm.ts";
import { segment } from "./comm.ts";
import { bytesOf, type CpuTensor } from "./dtype.ts";
import { reduceInto } from "./reduce/mod.ts";
import type { Arena, Fingerprint, WaitContext } from "./shm_arena.ts";

/**
 * Reduces `buf` (this rank's view into its symmetric buffer `buffers[rank]`) across the host group;
 * every rank must pass a view at the same byte offset and length.
 */
export async function allReduceSymmetric(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  buffers: readonly ArrayBuffer[],
  buf: CpuTensor,
  ctx: WaitContext,
): Promise<void> {
  await a.handshake(fp, ctx); // every rank's input is in place
  const n = a.size;
  const [start, len] = segment(buf.length, n, a.rank);
  if (len > 0) {
    const ctor = buf.constructor as new (b: ArrayBuffer, off: number, l: number) => CpuTensor;
    const off = buf.byteOffset + start * buf.BYTES_PER_ELEMENT;
    const views = buffers.map((b) => new ctor(b, off, len));
    // Rank order into rank 0's array, then the result into everyone else's.
    for (let q = 1; q < n; q++) reduceInto(call.dtype, call.op ?? "sum", views[0], views[q]);
    const result = bytesOf(views[0]);
    for (let q = 1; q < n; q++) bytesOf(views[q]).set(result);
  }
  await a.handshake(fp, ctx); // every slice is written everywhere
}
