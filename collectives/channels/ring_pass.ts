/**
 * @module
 * The pipelined ring pass shared by ring allreduce, reduce-scatter and allgather: at step k each rank
 * sends one segment to its right neighbour and receives one from its left, chunk by chunk, so that
 * a chunk is forwarded as soon as it has arrived (and been reduced), not when its whole step ends.
 *
 * Cost: steps * (alpha + S/n * beta) for S bytes over n ranks, plus the reduce kernel on reduce steps.
 */

import { both, type Call, type Comm, Progress, segment } from "../comm.ts";
import { type CpuTensor, sliceView } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";

/** The shape of a ring pass. Segment indices are taken modulo the group size. */
export interface RingPassPlan {
  /** Number of steps (n-1 for a reduce-scatter or allgather, 2(n-1) for allreduce). */
  steps: number;
  /** At step k this rank sends segment (rank - k + shift) and receives (rank - k - 1 + shift). */
  shift: number;
  /** The first `reduceSteps` steps reduce what arrives into the buffer; later steps copy it in place. */
  reduceSteps: number;
}

interface Unit {
  start: number;
  length: number;
}

/** The chunks of segment `seg` of a buffer of `count` elements split in `n`. */
function chunksOf(count: number, n: number, seg: number, chunkElems: number, out: Unit[]): number {
  const [start, length] = segment(count, n, seg);
  let added = 0;
  for (let off = 0; off < length; off += chunkElems) {
    out.push({ start: start + off, length: Math.min(chunkElems, length - off) });
    added++;
  }
  return added;
}

/**
 * Elements per chunk of a ring pass over `count` elements of `elemBytes` bytes in `n` segments: at
 * least 4 chunks a segment so that mid-size messages pipeline too, but no chunk under 64 KiB
 * (per-frame costs) or over `maxChunkBytes`. With `elemBytes` 1 it gives bytes (for the plan).
 */
export function ringChunkElems(count: number, n: number, elemBytes: number, maxChunkBytes: number): number {
  const minElems = Math.ceil((64 * 1024) / elemBytes);
  const maxElems = Math.max(1, Math.floor(maxChunkBytes / elemBytes));
  return Math.max(1, Math.min(maxElems, Math.max(minElems, Math.ceil(count / n / 4))));
}

/**
 * Runs a ring pass over `buf` (all `call.count` elements split into `comm.size` segments) in place.
 * Every rank must call it with the same plan, count and dtype.
 */
export async function ringPass(comm: Comm, call: Call, buf: CpuTensor, plan: RingPassPlan): Promise<void> {
  const n = comm.size;
  if (n === 1 || plan.steps === 0) return;
  const r = comm.rank;
  const right = (r + 1) % n;
  const left = (r - 1 + n) % n;
  const mod = (x: number) => ((x % n) + n) % n;
  const count = buf.length;
  const chunkElems = ringChunkElems(count, n, buf.BYTES_PER_ELEMENT, comm.chunkBytes);

  // Step k's received segment is step k+1's sent segment, so the send units after the first step
  // are exactly the receive units, one step later: send unit j waits for receive unit j - first.
  const sendUnits: Unit[] = [];
  const first = chunksOf(count, n, mod(r + plan.shift), chunkElems, sendUnits);
  const recvUnits: Unit[] = [];
  const recvStepEnd: number[] = [];
  for (let k = 0; k < plan.steps; k++) {
    chunksOf(count, n, mod(r - k - 1 + plan.shift), chunkElems, recvUnits);
    recvStepEnd.push(recvUnits.length);
  }
  const reduceUnits = plan.reduceSteps > 0 ? recvStepEnd[plan.reduceSteps - 1] : 0;
  const forwarded = plan.steps > 1 ? recvStepEnd[plan.steps - 2] : 0;
  for (let j = 0; j < forwarded; j++) sendUnits.push(recvUnits[j]);

  const received = new Progress();
  const scratch = reduceUnits > 0 ? comm.scratch(0, buf, Math.min(chunkElems, count)) : buf;

  const sender = async () => {
    for (let j = 0; j < sendUnits.length; j++) {
      if (j >= first) await received.reach(j - first + 1);
      const u = sendUnits[j];
      await comm.send(right, call, j, sliceView(buf, u.start, u.length));
    }
  };
  const receiver = async () => {
    for (let j = 0; j < recvUnits.length; j++) {
      const u = recvUnits[j];
      const dst = sliceView(buf, u.start, u.length);
      if (j < reduceUnits) {
        const tmp = sliceView(scratch, 0, u.length);
        await comm.recv(left, call, j, tmp);
        reduceInto(call.dtype, call.op ?? "sum", dst, tmp);
      } else {
        await comm.recv(left, call, j, dst);
      }
      received.advance();
    }
  };
  await both(sender, receiver, [received]);
}
