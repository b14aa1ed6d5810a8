/**
 * @module
 * Binomial-tree reduce for small messages: partial results flow up a binomial tree to the root in
 * ceil(log2 n) rounds. Only the root's buffer changes; the others' inputs are left as they were.
 *
 * Cost: ceil(log2 n) * (alpha + S * beta + S * gamma).
 */

import type { Call, Comm } from "../comm.ts";
import { allocLike, bytesOf, type CpuTensor } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";

/** Reduces `buf` from every rank into `buf` on `call.root`. */
export async function reduceBinomial(comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  const n = comm.size;
  if (n === 1) return;
  const root = call.root;
  const v = (comm.rank - root + n) % n;
  const abs = (rel: number) => (rel + root) % n;
  let acc = buf;
  if (v !== 0) {
    acc = allocLike(buf, buf.length);
    bytesOf(acc).set(bytesOf(buf));
  }
  let scratch: CpuTensor | null = null;
  for (let mask = 1; mask < n; mask <<= 1) {
    if (v & mask) {
      await comm.send(abs(v - mask), call, 0, acc);
      return;
    }
    if (v + mask < n) {
      scratch ??= allocLike(buf, buf.length);
      await comm.recv(abs(v + mask), call, 0, scratch);
      reduceInto(call.dtype, call.op ?? "sum", acc, scratch);
    }
  }
}
