/**
 * @module
 * Pipelined chain broadcast for large messages: root -> root+1 -> ... -> root+n-1, chunk by chunk,
 * each rank forwarding a chunk as soon as it has received it into place.
 *
 * Cost: (n-1 + chunks-1) * (alpha + C * beta) for chunks of C bytes: about S * beta for large S.
 */

import { both, type Call, type Comm, Progress } from "../comm.ts";
import { type CpuTensor, sliceView } from "../../dtype.ts";

/** Broadcasts `buf` from `call.root` to every rank, in place. */
export async function broadcastChain(comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  const n = comm.size;
  if (n === 1) return;
  const v = (comm.rank - call.root + n) % n;
  const next = v + 1 < n ? (comm.rank + 1) % n : -1;
  const prev = v > 0 ? (comm.rank - 1 + n) % n : -1;
  const step = comm.chunkElems(buf.BYTES_PER_ELEMENT);
  const chunks = Math.ceil(buf.length / step);
  const view = (j: number) => sliceView(buf, j * step, Math.min(step, buf.length - j * step));
  const received = new Progress();
  const sender = async () => {
    if (next < 0) return;
    for (let j = 0; j < chunks; j++) {
      if (prev >= 0) await received.reach(j + 1);
      await comm.send(next, call, j, view(j));
    }
  };
  const receiver = async () => {
    if (prev < 0) return;
    for (let j = 0; j < chunks; j++) {
      await comm.recv(prev, call, j, view(j));
      received.advance();
    }
  };
  await both(sender, receiver, [received]);
}
