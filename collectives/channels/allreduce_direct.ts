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

/**
 * Reduces `buf` across the two ranks of `comm` in place with one exchange: `undefined` when the
 * channel finished the exchange within this call (a small frame whose reply was there in time), so
 * the result is already in `buf`; otherwise a promise of it.
 */
export function allReduceDirect(comm: Comm, call: Call, buf: CpuTensor): Promise<void> | undefined {
  if (comm.size === 1) return undefined;
  if (comm.size !== 2) {
    throw new InvalidArgumentError(`the direct algorithm is for 2 ranks, not ${comm.size}`, {
      rank: comm.rank,
      op: call.name,
    });
  }
  const other = comm.scratch(0, buf, buf.length);
  const p = comm.exchange(1 - comm.rank, call, 0, buf, other);
  if (p === undefined) {
    reduceInto(call.dtype, call.op ?? "sum", buf, other);
    return undefined;
  }
  return p.then(() => reduceInto(call.dtype, call.op ?? "sum", buf, other));
}
