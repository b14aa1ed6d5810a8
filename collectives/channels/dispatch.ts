/**
 * @module
 * Runs the channel algorithm a plan chose: one switch per collective from an algorithm name (and its
 * chunk size) to the function in that algorithm's file. Choosing is plan.ts's job; arguments,
 * ordering and timeouts are the ProcessGroup's.
 */

import { InvalidArgumentError } from "../../errors.ts";
import { allReduceDirect } from "./allreduce_direct.ts";
import { allReduceGatherFold } from "./allreduce_gather_fold.ts";
import { allReduceHierarchical, type HierarchicalComms } from "./allreduce_hierarchical.ts";
import { allReduceOrdered } from "./allreduce_ordered.ts";
import { allReduceRabenseifner } from "./allreduce_rabenseifner.ts";
import { allReduceRecursiveDoubling } from "./allreduce_recursive_doubling.ts";
import { allReduceRing } from "./allreduce_ring.ts";
import { allReduceTree } from "./allreduce_tree.ts";
import { broadcastBinomial } from "./broadcast_binomial.ts";
import { broadcastChain } from "./broadcast_chain.ts";
import { broadcastTree } from "./broadcast_tree.ts";
import type { Call, Comm } from "../comm.ts";
import { allocLike, bytesOf, type CpuTensor, sliceView } from "../../dtype.ts";
import type { Algorithm } from "../plan/plan.ts";
import { reduceBinomial } from "./reduce_binomial.ts";
import { reduceChain } from "./reduce_chain.ts";
import { reduceOrdered } from "./reduce_ordered.ts";
import { reduceTree } from "./reduce_tree.ts";
import { reduceScatterOrdered } from "./reducescatter_ordered.ts";
import { reduceScatterRing } from "./reducescatter_ring.ts";

const RESOLVED: Promise<void> = Promise.resolve();

/** What a plan chose: the algorithm and its chunk size in bytes. */
export interface Choice {
  /** The algorithm. */
  algorithm: Algorithm;
  /** Bytes per pipelined chunk, for the algorithms that take one. */
  chunkBytes: number;
}

const elems = (c: Choice, t: CpuTensor) => Math.max(1, Math.floor(c.chunkBytes / t.BYTES_PER_ELEMENT));

function unknown(op: string, c: Choice, comm: Comm): never {
  throw new InvalidArgumentError(`no ${op} algorithm "${c.algorithm}"`, { rank: comm.rank, op });
}

/** Runs allreduce of `buf` in place with the chosen algorithm. */
export function runAllReduce(
  c: Choice,
  comm: Comm,
  hier: HierarchicalComms | null,
  call: Call,
  buf: CpuTensor,
): Promise<void> {
  switch (c.algorithm) {
    case "direct":
      return allReduceDirect(comm, call, buf) ?? RESOLVED;
    case "recursive_doubling":
      return allReduceRecursiveDoubling(comm, call, buf);
    case "ring":
      return allReduceRing(comm, call, buf);
    case "rabenseifner":
      return allReduceRabenseifner(comm, call, buf, elems(c, buf));
    case "tree":
      return allReduceTree(comm, call, buf, elems(c, buf));
    case "ordered":
      return allReduceOrdered(comm, call, buf, elems(c, buf));
    case "gather_fold":
      return allReduceGatherFold(comm, call, buf);
    case "hierarchical":
      if (!hier) {
        throw new InvalidArgumentError(
          "hierarchical needs ranks on 2 or more hosts, the same number on each",
          {
            rank: comm.rank,
            op: call.name,
          },
        );
      }
      return allReduceHierarchical(hier, call, buf);
  }
  return unknown(call.name, c, comm);
}

/** Runs broadcast of `buf` from `call.root` with the chosen algorithm. */
export function runBroadcast(c: Choice, comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  switch (c.algorithm) {
    case "binomial":
      return broadcastBinomial(comm, call, buf);
    case "chain":
      return broadcastChain(comm, call, buf);
    case "tree":
      return broadcastTree(comm, call, buf, elems(c, buf));
  }
  return unknown(call.name, c, comm);
}

/** Runs reduce of `buf` to `call.root` with the chosen algorithm. */
export function runReduce(c: Choice, comm: Comm, call: Call, buf: CpuTensor): Promise<void> {
  switch (c.algorithm) {
    case "binomial":
      return reduceBinomial(comm, call, buf);
    case "chain":
      return reduceChain(comm, call, buf);
    case "tree":
      return reduceTree(comm, call, buf, elems(c, buf));
    case "ordered":
      return reduceOrdered(comm, call, buf, elems(c, buf));
  }
  return unknown(call.name, c, comm);
}

/**
 * Runs reduce-scatter of `input` (n blocks) into `output` (block `comm.rank` of the result) with the
 * chosen algorithm. `input` is left unchanged unless `mayClobber` says it is the caller's own copy.
 */
export async function runReduceScatter(
  c: Choice,
  comm: Comm,
  call: Call,
  output: CpuTensor,
  input: CpuTensor,
  mayClobber: boolean,
): Promise<void> {
  if (c.algorithm === "ordered") return reduceScatterOrdered(comm, call, input, output, elems(c, input));
  if (c.algorithm !== "ring") return unknown(call.name, c, comm);
  // The ring reduces in place, so it works on a copy unless the input is already one.
  let work = input;
  if (!mayClobber) {
    work = allocLike(input, input.length);
    bytesOf(work).set(bytesOf(input));
  }
  await reduceScatterRing(comm, call, work);
  bytesOf(output).set(bytesOf(sliceView(work, comm.rank * output.length, output.length)));
}
