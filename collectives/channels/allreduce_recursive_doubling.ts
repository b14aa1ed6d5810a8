/**
 * @module
 * Recursive-doubling allreduce for small messages: in round k each rank exchanges its whole partial
 * result with rank XOR 2^k and reduces, so p = 2^floor(log2 n) ranks finish in log2 p rounds. The
 * n - p extra ranks first fold their input into a partner and get the result back at the end.
 * Every pairwise combine puts the lower rank's operand first, so all ranks compute the same bits.
 *
 * Cost: (log2 p + 2 [if n is not a power of two]) * (alpha + S * beta + S * gamma).
 */

import type { Call, Comm } from "../comm.ts";
import { bytesOf, type CpuTensor } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";

/** Reduces `buf` across all ranks in place. */
export async function allReduceRecursiveDoubling(comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  const n = comm.size;
  if (n === 1) return;
  const r = comm.rank;
  const op = call.op ?? "sum";
  let p = 1;
  while (p * 2 <= n) p *= 2;
  const other = comm.scratch(0, buf, buf.length);
  let frame = 0;

  // Fold: rank p + i hands its input to rank i and waits for the final result.
  if (r >= p) {
    await comm.send(r - p, call, frame, buf);
    await comm.recv(r - p, call, frame + 1 + Math.log2(p), buf);
    return;
  }
  if (r + p < n) {
    await comm.recv(r + p, call, frame, other);
    reduceInto(call.dtype, op, buf, other); // lower rank first: buf = buf op other
  }
  frame++;

  for (let mask = 1; mask < p; mask <<= 1, frame++) {
    const partner = r ^ mask;
    await Promise.all([comm.send(partner, call, frame, buf), comm.recv(partner, call, frame, other)]);
    if (r < partner) reduceInto(call.dtype, op, buf, other);
    else {
      reduceInto(call.dtype, op, other, buf);
      bytesOf(buf).set(bytesOf(other));
    }
  }

  if (r + p < n) await comm.send(r + p, call, frame, buf);
}
