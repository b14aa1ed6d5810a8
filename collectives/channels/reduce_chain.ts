/**
 * @module
 * Pipelined chain reduce for large messages: partial sums flow root+n-1 -> ... -> root+1 -> root,
 * chunk by chunk; each rank adds its own chunk to the one it received and forwards it at once.
 * Only the root's buffer changes.
 *
 * Cost: (n-1 + chunks-1) * (alpha + C * beta + C * gamma) for chunks of C bytes.
 */

import { both, type Call, type Comm, Progress } from "../comm.ts";
import { allocLike, type CpuTensor, sliceView } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";

/** Reduces `buf` from every rank into `buf` on `call.root`. */
export async function reduceChain(comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  const n = comm.size;
  if (n === 1) return;
  const op = call.op ?? "sum";
  const v = (comm.rank - call.root + n) % n;
  const prev = v + 1 < n ? (comm.rank + 1) % n : -1; // receive partials from here
  const next = v > 0 ? (comm.rank - 1 + n) % n : -1; // send partials there
  const step = comm.chunkElems(buf.BYTES_PER_ELEMENT);
  const chunks = Math.ceil(buf.length / step);
  const own = (j: number) => sliceView(buf, j * step, Math.min(step, buf.length - j * step));

  if (prev < 0) {
    // The far end of the chain sends its input unchanged.
    for (let j = 0; j < chunks; j++) await comm.send(next, call, j, own(j));
    return;
  }
  const slotLen = Math.min(step, buf.length);
  const slots = [allocLike(buf, slotLen), allocLike(buf, slotLen)];
  const slot = (j: number) => sliceView(slots[j & 1], 0, Math.min(step, buf.length - j * step));
  if (next < 0) {
    // The root reduces straight into its buffer.
    for (let j = 0; j < chunks; j++) {
      const tmp = slot(j);
      await comm.recv(prev, call, j, tmp);
      reduceInto(call.dtype, op, own(j), tmp);
    }
    return;
  }
  const ready = new Progress();
  const sent = new Progress();
  const receiver = async () => {
    for (let j = 0; j < chunks; j++) {
      if (j >= 2) await sent.reach(j - 1); // slot j&1 is free once chunk j-2 has gone out
      const tmp = slot(j);
      await comm.recv(prev, call, j, tmp);
      reduceInto(call.dtype, op, tmp, own(j));
      ready.advance();
    }
  };
  const sender = async () => {
    for (let j = 0; j < chunks; j++) {
      await ready.reach(j + 1);
      await comm.send(next, call, j, slot(j));
      sent.advance();
    }
  };
  await both(sender, receiver, [ready, sent]);
}
