/**
 * @module
 * Direct allreduce for two ranks: both send their whole input at once and reduce what arrives.
 * Every reduce op is commutative bit for bit on two operands, so both ranks compute the same bits.
 *
 * Cost: alpha + S * beta + S * gamma (one exchange).
 */

import { InvalidArgumentError } from "../../errors.ts";
import type { Call, Comm } from "../comm.ts";
import type { CpuTensor } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";

/** Reduces `buf` across the two ranks of `comm` in place with one exchange. */
export async function allReduceDirect(comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  if (comm.size === 1) return;
  if (comm.size !== 2) {
    throw new InvalidArgumentError(`the direct algorithm is for 2 ranks, not ${comm.size}`, {
      rank: comm.rank,
      op: call.name,
    });
  }
  const peer = 1 - comm.rank;
  const other = comm.scratch(0, buf, buf.length);
  await Promise.all([comm.send(peer, call, 0, buf), comm.recv(peer, call, 0, other)]);
  reduceInto(call.dtype, call.op ?? "sum", buf, other);
}
