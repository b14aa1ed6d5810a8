/**
 * @module
 * Same-host allGather on the shared arena. Tiny inputs (up to 4 KiB) travel in the call slots;
 * larger ones go chunk by chunk through each rank's chunk buffer, which every peer copies from
 * straight into its output.
 *
 * Cost (tiny): one cache-line handoff per peer. (large): S/n copied in and (n-1)/n S copied out
 * per rank, one wait per chunk.
 */

import { bytesOf, type CpuTensor, sliceView } from "../../dtype.ts";
import { type Arena, type Fingerprint, SMALL_PAYLOAD, W, type WaitContext } from "./shm_arena.ts";

/**
 * Bytes a rank publishes per step, less than the arena's chunk buffer: a peer then copies each piece
 * out while it is still in the shared cache. Measured with 2 ranks (2026-11-27, `deno task bench
 * --nproc 2 --op allgather --sizes 2M,16M --transport shm`, 2 runs each): 1 MiB steps 376-379 us and
 * 5.0-5.2 ms, 256 KiB 256-371 us, 128 KiB 231-235 us and 4.0 ms, 64 KiB 237-247 us and 4.1-4.2 ms.
 */
const STEP_BYTES = 128 << 10;

/**
 * Gathers every rank's `input` into `output` (rank q's block at `q * input.length`). `output` must
 * hold `size * input.length` elements of the same type.
 */
export async function allGatherShm(
  a: Arena,
  fp: Fingerprint,
  output: CpuTensor,
  input: CpuTensor,
  ctx: WaitContext,
): Promise<void> {
  const m = input.length;
  const r = a.rank;
  if (input.byteLength <= SMALL_PAYLOAD) {
    const p = a.begin(fp, ctx, input);
    const parity = typeof p === "number" ? p : await p;
    for (let q = 0; q < a.size; q++) {
      const block = sliceView(output, q * m, m);
      const from = q === r ? input : a.slotView(input, q, parity);
      for (let i = 0; i < m; i++) block[i] = from[i];
    }
    return;
  }
  await a.handshake(fp, ctx);
  const elem = input.BYTES_PER_ELEMENT;
  const step = Math.min(a.chunkElems(elem), Math.max(1, Math.floor(STEP_BYTES / elem)));
  const own = sliceView(output, r * m, m);
  if (own.byteOffset !== input.byteOffset || own.buffer !== input.buffer) bytesOf(own).set(bytesOf(input));
  for (let off = 0; off < m; off += step) {
    const len = Math.min(step, m - off);
    const k = a.chunks++;
    const s = k & 1;
    // This rank's buffer of parity s was last read for chunk k-2.
    await a.waitAll(W.done, k - 1, ctx);
    new Uint8Array(a.buffer, a.inBuf(r, s), len * elem).set(bytesOf(sliceView(input, off, len)));
    a.publish(W.in, k + 1);
    for (let q = 0; q < a.size; q++) {
      if (q === r) continue;
      const wait = a.waitFor(q, W.in, k + 1, ctx);
      if (wait) await wait;
      bytesOf(sliceView(output, q * m + off, len)).set(new Uint8Array(a.buffer, a.inBuf(q, s), len * elem));
    }
    a.publish(W.done, k + 1);
  }
}
