/**
 * @module
 * Chooses the algorithm of each collective: every applicable algorithm's time is predicted by the
 * cost model (cost_model.ts, algorithm_costs.ts) and the smallest wins, unless the caller forces one
 * or asks for deterministic results. {@link plan} is a pure function of its input (op, bytes, ranks,
 * transport, host layout, chunk size, forced algorithm, deterministic flag): it reads no clock, no
 * environment and no state, so ranks that pass the same input make the same choice with no agreement
 * round. The ProcessGroup builds that input only from values every rank shares.
 *
 * Measured facts the model was calibrated to reproduce (float32 allreduce, our 2-core machine,
 * docs/benchmarks.md): 2 ranks over tcp, one direct exchange beat the ring up to 1 MiB (633 us at
 * 1 MiB) and the ring won from 2 MiB (1.35 ms at 2 MiB, 1.53 GB/s busbw at 64 MiB); 4 ranks on 2
 * cores over tcp, recursive doubling beat the ring up to 1 MiB (0.35 vs 0.28 GB/s busbw at 1 MiB) and
 * the ring won from 2 MiB; a large reduce on 2 ranks is faster as a chain (the root reduces one chunk
 * while the next arrives) than as one message. tests/collectives/plan_test.ts checks that the plan
 * still makes those choices. Algorithms not yet timed here (Rabenseifner, the pipelined trees) win
 * only where the model predicts them clearly faster ({@link UNTIMED_MARGIN}); `CHOIR_ALGO` or the
 * `algorithm` option forces any of them, to compare.
 */

import { InvalidArgumentError } from "../../errors.ts";
import {
  type Algorithm,
  type Costed,
  costOf,
  type Media,
  type PlanOp,
  type Shape,
} from "./algorithm_costs.ts";
import { LINKS } from "./cost_model.ts";

export type { Algorithm, PlanOp } from "./algorithm_costs.ts";

/** The channel algorithms of each collective, in the order ties are broken. */
export const ALGORITHMS: Readonly<Record<PlanOp, readonly Algorithm[]>> = {
  allReduce: [
    "direct",
    "recursive_doubling",
    "ring",
    "rabenseifner",
    "tree",
    "hierarchical",
    "ordered",
    "gather_fold",
  ],
  broadcast: ["binomial", "chain", "tree"],
  reduce: ["binomial", "chain", "tree", "ordered"],
  reduceScatter: ["ring", "ordered"],
  allGather: ["ring"],
  barrier: ["dissemination", "tree"],
};

/** Algorithms that run on the shared arena when every rank is on one host (chosen by the group). */
const ARENA_ALGORITHMS: readonly Algorithm[] = ["shm_small", "shm_chunks", "shm_symmetric"];

/**
 * Algorithms whose times on this machine the constants were checked against (docs/benchmarks.md).
 * The others (Rabenseifner, the pipelined trees, the rank-ordered ones) are chosen only when predicted
 * at least {@link UNTIMED_MARGIN} faster than the best of these: near a tie the model's error is
 * larger than the difference, and a measured choice is the safer bet.
 */
const TIMED: readonly Algorithm[] = [
  "direct",
  "recursive_doubling",
  "ring",
  "hierarchical",
  "binomial",
  "chain",
  "dissemination",
];

/**
 * Algorithms whose links, summed over the job, grow faster than the ranks: recursive doubling,
 * Rabenseifner and the dissemination barrier reach a peer 2^k ranks away in each of log2 n rounds,
 * Bruck's gather (gather_fold) two, the ordered reduce-scatter every peer. A lazy group opens a link on
 * its first use, so one call of these opens N log2 N links or more across a job (12 a rank at 4,096
 * ranks, against 2-3 for a ring or a tree, docs/scale.md); it chooses among the others (ring and tree
 * neighbours, as NCCL's rings and trees) unless the call forces one or asks for rank-ordered results.
 */
const MANY_PEERS: readonly Algorithm[] = [
  "recursive_doubling",
  "rabenseifner",
  "gather_fold",
  "ordered",
  "dissemination",
];

/** How much faster (as a fraction) an untimed algorithm must be predicted to be chosen. */
const UNTIMED_MARGIN = 0.25;

/** The algorithms that fold every element in rank order (deterministic mode runs only these). */
const RANK_ORDERED: readonly Algorithm[] = ["ordered", "gather_fold"];

/** Ops whose result is a reduction, which deterministic mode folds in rank order. */
const REDUCING: readonly PlanOp[] = ["allReduce", "reduce", "reduceScatter"];

/** The collectives an algorithm can be forced on (by call option, group option or CHOIR_ALGO). */
export const FORCIBLE_OPS: readonly PlanOp[] = ["allReduce", "reduce", "broadcast", "reduceScatter"];

/** Whether `name` is an algorithm that can be forced on at least one collective. */
export function isForcible(name: string): name is Algorithm {
  return FORCIBLE_OPS.some((op) => ALGORITHMS[op].includes(name as Algorithm));
}

/** Whether `name` is an algorithm name. */
export function isAlgorithm(name: string): name is Algorithm {
  return Object.values(ALGORITHMS).some((list) => list.includes(name as Algorithm)) ||
    ARENA_ALGORITHMS.includes(name as Algorithm);
}

/** What the plan is computed from; every rank of a group passes the same values. */
export interface PlanInput {
  /** The collective. */
  op: PlanOp;
  /** The tensor's bytes (allGather: the output's; reduceScatter: the input's). */
  bytes: number;
  /** Ranks in the group. */
  n: number;
  /** The group's transport name (`tcp`, `shm`, or `shm+tcp` across hosts). */
  transport: string;
  /** Host index of every rank (default: all on one host). */
  hostOf?: readonly number[];
  /** Largest pipelined chunk, bytes (default 1 MiB). */
  chunkBytes?: number;
  /** Run this algorithm instead of the fastest predicted one. */
  algorithm?: Algorithm;
  /** Fold reductions in rank order so that results are bitwise reproducible. */
  deterministic?: boolean;
  /**
   * The group opens its links on first use: the plan keeps to algorithms whose links grow with the
   * ranks, not faster (see MANY_PEERS), unless forced or deterministic.
   */
  lazy?: boolean;
}

/** One algorithm that could run, with its predicted time. */
export interface Candidate {
  /** The algorithm. */
  algorithm: Algorithm;
  /** Predicted time, microseconds. */
  predictedUs: number;
}

/**
 * What a collective of a given size will run and why: the result of {@link plan} and of
 * `ProcessGroup.explain()`.
 */
export interface Explanation {
  /** The collective. */
  op: PlanOp;
  /** The size the plan was made for, bytes. */
  bytes: number;
  /** The algorithm that runs. */
  algorithm: Algorithm;
  /** Bytes per pipelined chunk it uses (the whole message when it does not chunk). */
  chunkBytes: number;
  /** Its predicted time, microseconds. */
  predictedUs: number;
  /** Why it was chosen, in words. */
  reason: string;
  /** Every algorithm that could run here, fastest predicted first. */
  candidates: Candidate[];
  /**
   * Links this rank holds to the group's peers when asked (`ProcessGroup.explain` fills it in; a lazy
   * group opens the ones an algorithm needs on its first run).
   */
  connections?: number;
}

/** Shapes by (frozen) host list: a group's list is one array, planned for many times (each op and size). */
const shapes = new WeakMap<readonly number[], Shape>();

/** The shape of a group from its size and the host of each rank (O(N) once per host list). */
function shapeOf(n: number, hostOf?: readonly number[]): Shape {
  if (hostOf === undefined) return countShape(n);
  // Only a frozen list (selectTransport's) is cached: nothing can change it under the cache.
  if (!Object.isFrozen(hostOf)) return countShape(n, hostOf);
  let shape = shapes.get(hostOf);
  if (shape === undefined || shape.n !== n) shapes.set(hostOf, shape = countShape(n, hostOf));
  return shape;
}

function countShape(n: number, hostOf?: readonly number[]): Shape {
  const counts = new Map<number, number>();
  for (const h of hostOf ?? []) counts.set(h, (counts.get(h) ?? 0) + 1);
  if (counts.size === 0) return { n, hosts: 1, perHost: n, equal: true };
  const per = [...counts.values()];
  return { n, hosts: counts.size, perHost: Math.max(...per), equal: per.every((c) => c === per[0]) };
}

/**
 * The media of a transport name: inside a host shared memory where it has it, else UCX's (measured over
 * its shared-memory wires) or tcp; across hosts tcp's (UCX's fabric there is not measured).
 */
export function mediaOf(transport: string): Media {
  const names = transport.split("+");
  const local = names.includes("shm") ? LINKS.shm : names.includes("ucx") ? LINKS.ucx : LINKS.tcp;
  return { local, cross: LINKS.tcp };
}

/** Why `algorithm` cannot run `op` on `shape`, or null when it can. */
function whyNot(op: PlanOp, algorithm: Algorithm, shape: Shape): string | null {
  if (!ALGORITHMS[op].includes(algorithm)) {
    return `${op} has no algorithm "${algorithm}" (it has ${ALGORITHMS[op].join(", ")})`;
  }
  if (algorithm === "direct" && shape.n > 2) return `direct needs at most 2 ranks, this group has ${shape.n}`;
  if (algorithm === "hierarchical" && (shape.hosts < 2 || !shape.equal)) {
    return "hierarchical needs ranks on 2 or more hosts, the same number on each";
  }
  return null;
}

const us = (x: number) => (x < 100 ? x.toFixed(1) : x.toFixed(0));
/** Predictions to a tenth of a microsecond: more digits would only be the model's noise. */
const tenth = (x: number) => Math.round(x * 10) / 10;

/**
 * The algorithm `input.op` runs for `input.bytes`, with every candidate's predicted time. Throws
 * InvalidArgumentError when a forced algorithm cannot run this op in this group.
 */
export function plan(input: PlanInput): Explanation {
  const { op, bytes, n } = input;
  const shape = shapeOf(n, input.hostOf);
  const media = mediaOf(input.transport);
  const maxChunk = input.chunkBytes ?? 1 << 20;
  const priced = new Map<Algorithm, Costed>();
  for (const a of ALGORITHMS[op]) {
    const c = whyNot(op, a, shape) === null ? costOf(a, op, bytes, shape, media, maxChunk) : null;
    if (c) priced.set(a, c);
  }
  const candidates = [...priced]
    .map(([algorithm, c]) => ({ algorithm, predictedUs: tenth(c.us) }))
    .sort((x, y) => x.predictedUs - y.predictedUs);
  const where = `${n} rank${n === 1 ? "" : "s"} on ${shape.hosts} host${
    shape.hosts === 1 ? "" : "s"
  } over ${input.transport}`;

  // A lazy group's choice skips the algorithms that would open more than O(N) links in the job.
  const avoid = input.lazy ? MANY_PEERS : [];
  const kept = candidates.filter((c) => !avoid.includes(c.algorithm));
  const eligible = kept.length > 0 ? kept : candidates;
  let algorithm: Algorithm;
  let reason: string;
  const forced = input.algorithm;
  if (forced !== undefined) {
    const why = whyNot(op, forced, shape);
    if (why) throw new InvalidArgumentError(`cannot force ${forced}: ${why}`, { op });
  }
  if (input.deterministic && REDUCING.includes(op) && n > 2) {
    // Only the rank-ordered algorithms qualify; the fastest of them, or the forced one if it is one.
    const ordered = candidates.filter((c) => RANK_ORDERED.includes(c.algorithm));
    algorithm = forced && RANK_ORDERED.includes(forced) ? forced : ordered[0].algorithm;
    reason = `deterministic: every element folded in rank order 0..${n - 1}${
      forced && forced !== algorithm ? ` (instead of the forced ${forced})` : ""
    }`;
  } else if (forced !== undefined) {
    algorithm = forced;
    reason = `forced (${where})`;
  } else if (!avoid.includes("rabenseifner") && tinyRabenseifner(input, shape.hosts, priced)) {
    algorithm = "rabenseifner";
    reason = `measured fastest for fewer elements than ranks on ${where}: ranks without a slice skip ` +
      `their exchanges (243 vs 299 us for recursive doubling, 4 ranks over tcp, 8 B, 2026-11-27)`;
  } else {
    const timed = eligible.find((c) => TIMED.includes(c.algorithm));
    const best = eligible[0];
    algorithm = timed && best.predictedUs > (1 - UNTIMED_MARGIN) * timed.predictedUs
      ? timed.algorithm
      : best.algorithm;
    const next = eligible.find((c) => c.algorithm !== algorithm);
    const skipped = candidates[0].algorithm !== best.algorithm ? candidates[0] : undefined;
    reason =
      `${
        algorithm === best.algorithm ? "fastest" : `timed and within ${UNTIMED_MARGIN * 100}% of the fastest`
      } predicted for ${where}` +
      (skipped
        ? ` among ring and tree neighbours (links open on first use: ${skipped.algorithm}, predicted ` +
          `${us(skipped.predictedUs)} us, would open log2(n) links a rank or more)`
        : "") +
      (next ? `; next ${next.algorithm} at ${us(next.predictedUs)} us` : "") +
      (input.deterministic && REDUCING.includes(op) ? "; with 2 ranks every order gives the same bits" : "");
  }
  const chosen = priced.get(algorithm)!;
  return {
    op,
    bytes,
    algorithm,
    chunkBytes: chosen.chunkBytes,
    predictedUs: tenth(chosen.us),
    reason,
    candidates,
  };
}

/**
 * The explanation of a collective that runs on the shared arena (`algorithm`, picked by the group
 * from the same rules it dispatches with): the arena's predicted time next to the channel
 * algorithms' over shared memory, for comparison.
 */
export function planArena(input: PlanInput, algorithm: Algorithm, arenaChunk: number): Explanation {
  const shape = shapeOf(input.n, input.hostOf);
  const own = costOf(
    algorithm,
    input.op,
    input.bytes,
    shape,
    mediaOf("shm"),
    input.chunkBytes ?? 1 << 20,
    arenaChunk,
  );
  if (!own) throw new InvalidArgumentError(`${algorithm} does not run ${input.op}`, { op: input.op });
  const channels = plan({ ...input, transport: "shm", algorithm: undefined, deterministic: false });
  const candidates = [{ algorithm, predictedUs: tenth(own.us) }, ...channels.candidates]
    .sort((x, y) => x.predictedUs - y.predictedUs);
  return {
    op: input.op,
    bytes: input.bytes,
    algorithm,
    chunkBytes: own.chunkBytes,
    predictedUs: tenth(own.us),
    reason: `all ${input.n} ranks on one host: straight on the shared arena, no channels` +
      (input.deterministic && REDUCING.includes(input.op) ? " (it folds in rank order: deterministic)" : ""),
    candidates,
  };
}

/**
 * A measured exception to the model: an allReduce of fewer elements than ranks (4 or more, a power of
 * two, one host, TCP) runs fastest as Rabenseifner, whose ranks without a slice skip their exchanges
 * (medians of 5 interleaved rounds, 2026-11-27: 243.8 us against 298.7 for recursive doubling, 4 ranks,
 * 8 B; at 1 KiB recursive doubling won again, 331.7 against 521.0).
 */
function tinyRabenseifner(input: PlanInput, hosts: number, priced: Map<Algorithm, Costed>): boolean {
  const { op, bytes, n } = input;
  return op === "allReduce" && input.transport === "tcp" && hosts === 1 && n >= 4 && (n & (n - 1)) === 0 &&
    bytes > 0 && bytes / 4 < n && priced.has("rabenseifner");
}

/** Gathers whose whole result is at most this many bytes go up a binomial tree. */
const GATHER_TREE_BYTES = 64 * 1024;

/**
 * The algorithm gather and scatter use for `bytes` per rank over `n` ranks: while the whole result is
 * small, a binomial tree (log2 n rounds, each rank forwarding its subtree's blocks); beyond that,
 * the root exchanges with every rank directly, so no block crosses a link twice.
 */
export function planGather(bytes: number, n: number): "binomial" | "linear" {
  return bytes * n <= GATHER_TREE_BYTES && n > 2 ? "binomial" : "linear";
}
