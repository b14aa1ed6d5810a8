/**
 * @module
 * Each algorithm's predicted time under the cost model (cost_model.ts): its critical path tallied
 * from the same terms as the cost line in the algorithm's own file, and the chunk size it runs with.
 * Pure functions of their arguments; plan.ts compares them.
 */

import { framesOf, HOST, type LinkCost, type Rates, rates, type Tally, tally, timeOf } from "./cost_model.ts";
import { ringChunkElems } from "../channels/ring_pass.ts";
import { treeDepth } from "../channels/tree_pass.ts";

/** Every algorithm name a collective may run (channel algorithms and shared-arena ones). */
export type Algorithm =
  | "direct"
  | "recursive_doubling"
  | "ring"
  | "rabenseifner"
  | "tree"
  | "hierarchical"
  | "ordered"
  | "gather_fold"
  | "binomial"
  | "chain"
  | "dissemination"
  | "shm_small"
  | "shm_chunks"
  | "shm_symmetric";

/** The collectives the plan knows. */
export type PlanOp = "allReduce" | "broadcast" | "reduce" | "allGather" | "reduceScatter" | "barrier";

/** Where the ranks are: how many, on how many hosts, and how they share them. */
export interface Shape {
  /** Ranks in the group. */
  n: number;
  /** Distinct hosts. */
  hosts: number;
  /** Ranks on the most crowded host. */
  perHost: number;
  /** Whether every host holds the same number of ranks. */
  equal: boolean;
}

/** The media an algorithm's messages cross. */
export interface Media {
  /** Between ranks of one host. */
  local: LinkCost;
  /** Between hosts. */
  cross: LinkCost;
}

/** A prediction: microseconds, and the chunk size the algorithm would run with. */
export interface Costed {
  /** Predicted time, microseconds. */
  us: number;
  /** Bytes per pipelined chunk (the whole message for unchunked algorithms). */
  chunkBytes: number;
}

/** Smallest chunk the tree pipeline uses: below it, per-frame costs dominate. */
const MIN_TREE_CHUNK = 16 << 10;

const log2Ceil = (n: number) => (n <= 1 ? 0 : Math.ceil(Math.log2(n)));
/** Hops from the root to the deepest rank of a binomial tree of `n` ranks: the most one-bits below n. */
function binomialDepth(n: number): number {
  let depth = 0;
  for (let v = 1; v < n; v++) {
    let bits = 0;
    for (let x = v; x > 0; x &= x - 1) bits++;
    depth = Math.max(depth, bits);
  }
  return depth;
}
const pow2Floor = (n: number) => 2 ** Math.floor(Math.log2(Math.max(1, n)));

/** Ring pass of `steps` steps over `s` bytes in `n` segments, reducing in `reduceSteps` of them. */
function ringTally(s: number, n: number, steps: number, reduceSteps: number, maxChunk: number, r: Rates) {
  const chunk = ringChunkElems(s, n, 1, maxChunk);
  const k = s === 0 ? 0 : Math.ceil(s / n / chunk);
  const t = tally({
    rounds: steps,
    frames: steps * k * framesOf(chunk, r.w),
    bytes: (steps / n) * s,
    reduced: (reduceSteps / n) * s,
  });
  return { t, chunk };
}

/** The pipelined-tree chunk that balances stage count against per-stage cost (at least 16 KiB). */
function treeChunk(s: number, stages: number, perByte: number, r: Rates, maxChunk: number): number {
  if (s === 0) return maxChunk;
  const k = Math.sqrt(((stages - 1) * s * perByte) / r.o);
  const c = k >= 1 ? Math.ceil(s / k) : s;
  return Math.min(maxChunk, Math.max(Math.min(MIN_TREE_CHUNK, s), c));
}

/**
 * Pipelined tree: `depth` levels in all, `links` frames each way per chunk on the busiest rank (two
 * children and a parent) and `kids` reduces per chunk.
 */
function treeTally(
  s: number,
  depth: number,
  links: number,
  kids: number,
  maxChunk: number,
  r: Rates,
  oneWay: boolean,
) {
  const chunk = treeChunk(s, depth, links * r.b + kids * r.g, r, maxChunk);
  const k = s === 0 ? 0 : Math.ceil(s / chunk);
  const stages = s === 0 ? 0 : depth + k - 1;
  const t = tally({
    rounds: Math.min(depth, stages),
    frames: stages * links * framesOf(chunk, r.w),
    bytes: stages * links * Math.min(chunk, s),
    reduced: kids * s,
    oneWay,
    pipelined: oneWay && k > 1,
  });
  return { t, chunk };
}

/** The rank-ordered reduce-scatter: one round per chunk, every peer's frame in it. */
function orderedTally(s: number, n: number, maxChunk: number, r: Rates): Tally {
  const seg = s / n;
  const k = s === 0 ? 0 : Math.ceil(seg / maxChunk);
  return tally({
    rounds: k,
    frames: (n - 1) * k * framesOf(Math.min(seg, maxChunk), r.w),
    bytes: ((n - 1) / n) * s,
    reduced: ((n - 1) / n) * s,
  });
}

function add(a: Tally, b: Tally): Tally {
  return {
    rounds: a.rounds + b.rounds,
    frames: a.frames + b.frames,
    bytes: a.bytes + b.bytes,
    reduced: a.reduced + b.reduced,
    copied: a.copied + b.copied,
    oneWay: a.oneWay && b.oneWay,
    pipelined: a.pipelined && b.pipelined,
  };
}

/**
 * Predicted time of `algorithm` running `op` on `s` bytes (the tensor's bytes; for allGather the
 * output's, for reduceScatter the input's), in chunks of at most `maxChunk` bytes; null when the
 * algorithm cannot run that op on that shape. `arenaChunk` is the shared arena's chunk size.
 */
export function costOf(
  algorithm: Algorithm,
  op: PlanOp,
  s: number,
  shape: Shape,
  media: Media,
  maxChunk: number,
  arenaChunk = maxChunk,
): Costed | null {
  const { n } = shape;
  const r = rates(shape.hosts > 1 ? media.cross : media.local, shape.perHost);
  const whole = (t: Tally): Costed => ({ us: timeOf(t, r), chunkBytes: s });
  const chunked = (x: { t: Tally; chunk: number }): Costed => ({ us: timeOf(x.t, r), chunkBytes: x.chunk });
  const lg = log2Ceil(n);
  const p = pow2Floor(n);
  const extra = n === p ? 0 : 1;
  if (n === 1) return { us: 0, chunkBytes: s };

  switch (`${op}/${algorithm}`) {
    case "allReduce/direct":
      return n === 2 ? whole(tally({ rounds: 1, frames: framesOf(s, r.w), bytes: s, reduced: s })) : null;
    case "allReduce/recursive_doubling": {
      const rounds = Math.log2(p) + 2 * extra;
      return whole(
        tally({
          rounds,
          frames: rounds * framesOf(s, r.w),
          bytes: rounds * s,
          reduced: (rounds - extra) * s,
        }),
      );
    }
    case "allReduce/ring":
      return chunked(ringTally(s, n, 2 * (n - 1), n - 1, maxChunk, r));
    case "allReduce/rabenseifner": {
      const steps = Math.log2(p);
      let frames = 0;
      for (let i = 1; i <= steps; i++) {
        frames += 2 * Math.ceil(s / 2 ** i / maxChunk) * framesOf(Math.min(maxChunk, s / 2 ** i), r.w);
      }
      frames += extra * 2 * Math.ceil(s / maxChunk) * framesOf(Math.min(maxChunk, s), r.w);
      const t = tally({
        rounds: 2 * steps + 2 * extra,
        frames: s === 0 ? 0 : frames,
        bytes: (2 * (p - 1) / p) * s + extra * 2 * s,
        reduced: ((p - 1) / p) * s + extra * s,
      });
      return { us: timeOf(t, r), chunkBytes: Math.min(maxChunk, s) };
    }
    case "allReduce/tree":
      return chunked(
        treeTally(s, 2 * treeDepth(n), n === 2 ? 1 : n === 3 ? 2 : 3, Math.min(2, n - 1), maxChunk, r, false),
      );
    case "allReduce/ordered": {
      const ag = ringTally(s, n, n - 1, 0, maxChunk, r);
      return { us: timeOf(add(orderedTally(s, n, maxChunk, r), ag.t), r), chunkBytes: Math.min(maxChunk, s) };
    }
    case "allReduce/gather_fold":
      return whole(tally({ rounds: lg, frames: lg, bytes: (n - 1) * s, reduced: (n - 1) * s }));
    case "allReduce/hierarchical": {
      if (shape.hosts < 2 || !shape.equal) return null;
      const l = shape.perHost;
      const h = shape.hosts;
      const local = rates(media.local, l);
      const cross = rates(media.cross, l);
      const rs = ringTally(s, l, l - 1, l - 1, maxChunk, local);
      const mid = ringTally(s / l, h, 2 * (h - 1), h - 1, maxChunk, cross);
      const ag = ringTally(s, l, l - 1, 0, maxChunk, local);
      return { us: timeOf(rs.t, local) + timeOf(mid.t, cross) + timeOf(ag.t, local), chunkBytes: rs.chunk };
    }
    case "reduceScatter/ring":
      return chunked(ringTally(s, n, n - 1, n - 1, maxChunk, r));
    case "reduceScatter/ordered":
      return { us: timeOf(orderedTally(s, n, maxChunk, r), r), chunkBytes: Math.min(maxChunk, s / n) };
    case "allGather/ring":
      return chunked(ringTally(s, n, n - 1, 0, maxChunk, r));
    case "broadcast/binomial":
      // The root sends its ceil(log2 n) copies at once; the deepest rank is as many hops away as its
      // relative rank has one-bits.
      return whole(
        tally({ rounds: binomialDepth(n), frames: lg * framesOf(s, r.w), bytes: lg * s, oneWay: true }),
      );
    case "reduce/binomial":
      return whole(
        tally({ rounds: lg, frames: lg * framesOf(s, r.w), bytes: lg * s, reduced: lg * s, oneWay: true }),
      );
    case "broadcast/chain":
    case "reduce/chain": {
      const chunk = Math.max(1, Math.min(maxChunk, s));
      const k = Math.ceil(s / chunk);
      const stages = s === 0 ? 0 : n - 1 + k - 1;
      const t = tally({
        rounds: Math.min(n - 1, stages),
        frames: stages * framesOf(chunk, r.w),
        bytes: stages * chunk,
        reduced: op === "reduce" ? stages * chunk : 0,
        oneWay: true,
        pipelined: k > 1,
      });
      return { us: timeOf(t, r), chunkBytes: chunk };
    }
    case "broadcast/tree":
      return chunked(treeTally(s, treeDepth(n), n === 2 ? 1 : 2, 0, maxChunk, r, true));
    case "reduce/tree":
      return chunked(treeTally(s, treeDepth(n), n === 2 ? 1 : 2, Math.min(2, n - 1), maxChunk, r, true));
    case "reduce/ordered": {
      const gather = tally({ frames: (n - 1) * Math.ceil(s / n / maxChunk), bytes: ((n - 1) / n) * s });
      return {
        us: timeOf(add(orderedTally(s, n, maxChunk, r), gather), r),
        chunkBytes: Math.min(maxChunk, s / n),
      };
    }
    case "barrier/dissemination":
      return whole(tally({ rounds: lg, frames: lg }));
    case "barrier/tree":
      // Up and down the binary tree; an inner rank hears from two children and its parent, and tells as many.
      return whole(tally({ rounds: 2 * treeDepth(n), frames: n === 2 ? 2 : n === 3 ? 4 : 6 }));
  }
  return arenaCost(algorithm, op, s, shape, arenaChunk);
}

/** Predicted time of an algorithm of the shared arena (every rank on one host), or null. */
function arenaCost(algorithm: Algorithm, op: PlanOp, s: number, shape: Shape, chunk: number): Costed | null {
  if (shape.hosts !== 1) return null;
  const n = shape.n;
  const arena = {
    alphaUs: HOST.arenaUs,
    frameUs: HOST.arenaUs,
    betaUsPerByte: 0,
    betaOneWayUsPerByte: 0,
    windowBytes: Infinity,
  };
  const r = rates(arena, shape.perHost, HOST, HOST.arenaSwitchUs);
  const k = Math.ceil(s / chunk);
  const share = ((n - 1) / n) * s;
  switch (`${op}/${algorithm}`) {
    case "allReduce/shm_small":
    case "reduce/shm_small":
    case "reduceScatter/shm_small":
    case "barrier/shm_small":
      return { us: timeOf(tally({ rounds: 1, reduced: share }), r), chunkBytes: s };
    case "broadcast/shm_small":
    case "allGather/shm_small":
      return { us: timeOf(tally({ rounds: 1 }), r), chunkBytes: s };
    case "reduce/shm_chunks":
      // Per chunk: hand over, reduce a slice, the root fetches: three waits.
      return {
        us: timeOf(tally({ rounds: 1 + 3 * k, copied: 2 * s, reduced: share }), r),
        chunkBytes: chunk,
      };
    case "reduceScatter/shm_chunks":
      // Per piece: hand over the others' blocks, reduce this rank's: two waits.
      return {
        us: timeOf(tally({ rounds: 1 + 2 * k, copied: share, reduced: share }), r),
        chunkBytes: chunk,
      };
    case "allGather/shm_chunks":
      // Per chunk: copy in, every peer copies out: two waits.
      return { us: timeOf(tally({ rounds: 1 + 2 * k, copied: s }), r), chunkBytes: chunk };
    case "allReduce/shm_chunks":
      // Per chunk: hand over, reduce own slice, fetch: three waits; about one copy each way.
      return {
        us: timeOf(tally({ rounds: 1 + 3 * k, copied: 2 * share + s / n, reduced: share }), r),
        chunkBytes: chunk,
      };
    case "allReduce/shm_symmetric":
      return { us: timeOf(tally({ rounds: 2, copied: share, reduced: share }), r), chunkBytes: s };
    case "broadcast/shm_chunks":
      return { us: timeOf(tally({ rounds: 1 + k, copied: s }), r), chunkBytes: chunk };
  }
  return null;
}
