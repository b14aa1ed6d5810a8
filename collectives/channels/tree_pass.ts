/**
 * @module
 * The pipelined binary tree shared by tree allreduce, reduce and broadcast. Ranks form a binary tree
 * in heap order around the root (relative rank v has children 2v+1 and 2v+2), and the buffer moves in
 * chunks: up the tree with a reduction at every inner rank, and/or down from the root, each chunk
 * forwarded as soon as it is ready, so that every level of the tree works on some chunk at once.
 *
 * Cost: (depth + k - 1) stages for k chunks of C bytes (2 * depth + k - 1 up and down), each stage
 * alpha + C * beta per link of the busiest rank (an inner rank has up to two children and a parent),
 * plus 2C * gamma on the way up. depth = floor(log2 n).
 */

import { type Call, type Comm, Progress, together } from "../comm.ts";
import { bytesOf, type CpuTensor, sliceView } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";

/** A rank's place in the binary tree around `root`: its parent (-1 at the root) and children. */
export interface TreeLinks {
  /** Parent rank, or -1 for the root. */
  parent: number;
  /** Child ranks (none, one or two), lower relative rank first. */
  children: number[];
}

/** The links of `rank` in the heap-ordered binary tree of `n` ranks rooted at `root`. */
export function binaryTree(rank: number, n: number, root: number): TreeLinks {
  const v = (rank - root + n) % n;
  const abs = (rel: number) => (rel + root) % n;
  const children: number[] = [];
  for (const c of [2 * v + 1, 2 * v + 2]) if (c < n) children.push(abs(c));
  return { parent: v === 0 ? -1 : abs((v - 1) >> 1), children };
}

/** Levels below the root of a heap-ordered binary tree of `n` ranks: floor(log2 n). */
export function treeDepth(n: number): number {
  return n <= 1 ? 0 : Math.floor(Math.log2(n));
}

/** What a tree pass does. */
export interface TreePassPlan {
  /** Reduce every chunk up the tree to the root. */
  up: boolean;
  /** Send every chunk down from the root (after the reduction, when `up` is set too). */
  down: boolean;
  /** Elements per pipelined chunk. */
  chunkElems: number;
  /** Leave non-root ranks' buffers unchanged (reduce): partial results go to scratch instead. */
  keepInput: boolean;
}

/**
 * Runs a pipelined pass over `buf` on the tree rooted at `call.root` (0 when the call has none).
 * Every rank must call it with the same plan, count and dtype.
 */
export async function treePass(comm: Comm, call: Call, buf: CpuTensor, plan: TreePassPlan): Promise<void> {
  const n = comm.size;
  if (n === 1 || buf.length === 0) return;
  const { parent, children } = binaryTree(comm.rank, n, Math.max(0, call.root));
  const step = Math.max(1, Math.min(plan.chunkElems, buf.length));
  const chunks = Math.ceil(buf.length / step);
  const len = (j: number) => Math.min(step, buf.length - j * step);
  const own = (j: number) => sliceView(buf, j * step, len(j));
  const op = call.op ?? "sum";
  const up = plan.up && children.length > 0; // this rank reduces what its children send
  const sendsUp = plan.up && parent >= 0;
  // Where chunk j's partial result lives: the buffer itself unless the input must stay unchanged
  // (then two rotating scratch chunks, each free again once its previous chunk has gone up).
  const rotate = up && plan.keepInput && parent >= 0;
  const acc = (j: number) => rotate ? sliceView(comm.scratch(2 + (j & 1), buf, step), 0, len(j)) : own(j);

  const reduced = new Progress(); // chunks whose subtree reduction is complete here
  const sentUp = new Progress();
  const ready = new Progress(); // chunks holding their final value here (down pass)
  const loops: (() => Promise<void>)[] = [];

  if (up) {
    loops.push(async () => {
      const tmp = children.map((_, i) => comm.scratch(i, buf, step));
      for (let j = 0; j < chunks; j++) {
        if (rotate && j >= 2) await sentUp.reach(j - 1);
        const a = acc(j);
        if (rotate) bytesOf(a).set(bytesOf(own(j)));
        const got = tmp.map((t) => sliceView(t, 0, len(j)));
        await Promise.all(children.map((c, i) => comm.recv(c, call, j, got[i])));
        for (const g of got) reduceInto(call.dtype, op, a, g);
        reduced.advance();
      }
    });
  }
  if (sendsUp) {
    loops.push(async () => {
      for (let j = 0; j < chunks; j++) {
        if (up) await reduced.reach(j + 1);
        await comm.send(parent, call, j, acc(j));
        sentUp.advance();
      }
    });
  }
  if (plan.down && parent >= 0) {
    loops.push(async () => {
      for (let j = 0; j < chunks; j++) {
        // The final value lands where this rank's partial sum was: that must have left first.
        if (sendsUp) await sentUp.reach(j + 1);
        await comm.recv(parent, call, j, own(j));
        ready.advance();
      }
    });
  }
  if (plan.down && children.length > 0) {
    // At the root the final chunks are the reduced ones (allreduce) or the input (broadcast).
    const final = parent >= 0 ? ready : up ? reduced : null;
    loops.push(async () => {
      for (let j = 0; j < chunks; j++) {
        if (final) await final.reach(j + 1);
        const c = own(j);
        await Promise.all(children.map((child) => comm.send(child, call, j, c)));
      }
    });
  }
  await together(loops, [reduced, sentUp, ready]);
}
