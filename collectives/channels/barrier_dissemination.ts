/**
 * @module
 * Dissemination barrier: in round k every rank signals rank + 2^k and waits for rank - 2^k, so after
 * ceil(log2 n) rounds every rank has heard, directly or not, from every other.
 *
 * Cost: ceil(log2 n) * alpha.
 */

import type { Call, Comm } from "../comm.ts";

const EMPTY = new Uint8Array(0);

/** Returns once every rank of the group has entered the barrier. */
export async function barrierDissemination(comm: Comm, call: Call): Promise<void> {
  const n = comm.size;
  for (let dist = 1, round = 0; dist < n; dist <<= 1, round++) {
    await Promise.all([
      comm.send((comm.rank + dist) % n, call, round, EMPTY),
      comm.recv((comm.rank - dist + n) % n, call, round, EMPTY),
    ]);
  }
}
