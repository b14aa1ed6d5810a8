/**
 * @module
 * Binomial-tree broadcast for small messages: the root's data reaches all n ranks in ceil(log2 n)
 * rounds; each rank receives once from its parent, then sends to its children at the same time.
 *
 * Cost: ceil(log2 n) * (alpha + S * beta).
 */

import type { Call, Comm } from "../comm.ts";
import type { CpuTensor } from "../../dtype.ts";

/** Broadcasts `buf` from `call.root` to every rank, in place. */
export async function broadcastBinomial(comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  const n = comm.size;
  if (n === 1) return;
  const root = call.root;
  const v = (comm.rank - root + n) % n; // rank relative to the root
  const abs = (rel: number) => (rel + root) % n;
  let mask = 1;
  while (mask < n) {
    if (v & mask) {
      await comm.recv(abs(v - mask), call, 0, buf);
      break;
    }
    mask <<= 1;
  }
  const sends: Promise<void>[] = [];
  for (mask >>= 1; mask > 0; mask >>= 1) {
    if (v + mask < n) sends.push(comm.send(abs(v + mask), call, 0, buf));
  }
  await Promise.all(sends);
}
