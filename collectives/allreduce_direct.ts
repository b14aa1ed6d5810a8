/**
 * @module
 * Direct allreduce for small messages: every rank sends its whole input to every other rank at once
 * and reduces all n inputs locally in rank order, so every rank computes the same bits.
 *
 * Cost: alpha + (n-1) * S * beta (all sends in flight together) + (n-1) * S * gamma.
 */

import type { Call, Comm } from "./comm.ts";
import { allocLike, bytesOf, type CpuTensor } from "./dtype.ts";
import { reduceInto } from "./reduce/mod.ts";

/** Reduces `buf` across all ranks in place, exchanging full copies (for small `buf`). */
export async function allReduceDirect(comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  const n = comm.size;
  if (n === 1) return;
  const r = comm.rank;
  if (n === 2) {
    // Two inputs: every op is commutative bit for bit, so each rank may reduce in its own order.
    const peer = 1 - r;
    const other = allocLike(buf, buf.length);
    await Promise.all([comm.send(peer, call, 0, buf), comm.recv(peer, call, 0, other)]);
    reduceInto(call.dtype, call.op ?? "sum", buf, other);
    return;
  }
  const inputs: CpuTensor[] = new Array(n);
  const own = allocLike(buf, buf.length);
  bytesOf(own).set(bytesOf(buf));
  inputs[r] = own;
  const ops: Promise<void>[] = [];
  for (let p = 0; p < n; p++) {
    if (p === r) continue;
    ops.push(comm.send(p, call, 0, own));
    const into = allocLike(buf, buf.length);
    inputs[p] = into;
    ops.push(comm.recv(p, call, 0, into));
  }
  await Promise.all(ops);
  // Reduce in rank order (0, 1, ..., n-1) whatever this rank is, for bitwise agreement.
  bytesOf(buf).set(bytesOf(inputs[0]));
  for (let p = 1; p < n; p++) reduceInto(call.dtype, call.op ?? "sum", buf, inputs[p]);
}
