/**
 * @module
 * Same-host broadcast on the shared arena: the root fills its double-buffered
 * chunk buffers and every other rank copies each chunk out as soon as it is there.
 *
 * Cost: one handshake, then S copied in by the root and S copied out by each other rank.
 */

import type { Call } from "../comm.ts";
import { bytesOf, type CpuTensor, sliceView } from "../../dtype.ts";
import { type Arena, type Fingerprint, W, type WaitContext } from "./shm_arena.ts";

/**
 * Copies `buf` from `call.root` to every rank of the arena through the chunk buffers: the root copies
 * each chunk in once, every other rank copies it out as soon as it is there.
 */
export async function broadcastShm(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  buf: CpuTensor,
  ctx: WaitContext,
): Promise<void> {
  await a.handshake(fp, ctx);
  const root = call.root;
  const elem = buf.BYTES_PER_ELEMENT;
  const step = a.chunkElems(elem);
  for (let off = 0; off < buf.length; off += step) {
    const len = Math.min(step, buf.length - off);
    const k = a.chunks++;
    const s = k & 1;
    const slot = new Uint8Array(a.buffer, a.inBuf(root, s), len * elem);
    if (a.rank === root) {
      // The root's buffer of parity s was last read for chunk k-2.
      await a.waitAll(W.done, k - 1, ctx);
      slot.set(bytesOf(sliceView(buf, off, len)));
      a.publish(W.in, k + 1);
      a.publish(W.done, k + 1);
    } else {
      const wait = a.waitFor(root, W.in, k + 1, ctx);
      if (wait) await wait;
      bytesOf(sliceView(buf, off, len)).set(slot);
      a.publish(W.done, k + 1);
    }
  }
}

/**
 * Tiny broadcast (up to 4 KiB) through the root's call slot: the root publishes its data with
 * the fingerprint; every other rank copies it out once the handshake is complete. Synchronous
 * (undefined) when every peer is on time.
 */
export function broadcastShmSmall(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  buf: CpuTensor,
  ctx: WaitContext,
): Promise<void> | undefined {
  const root = call.root;
  const p = a.begin(fp, ctx, a.rank === root ? buf : undefined);
  const copy = (parity: number) => {
    if (a.rank === root) return;
    const from = a.slotView(buf, root, parity);
    for (let i = 0; i < buf.length; i++) buf[i] = from[i];
  };
  if (typeof p !== "number") return p.then(copy);
  copy(p);
  return undefined;
}
