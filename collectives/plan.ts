/**
 * @module
 * Chooses the algorithm of each collective from the message size and the world size. Every rank
 * computes the same choice from the same inputs, so no agreement round is needed.
 */

/** The algorithms a collective may run. */
export type Algorithm =
  | "direct"
  | "recursive_doubling"
  | "ring"
  | "hierarchical"
  | "binomial"
  | "chain"
  | "dissemination";

/**
 * Messages up to this many bytes per rank use the latency algorithms (direct exchange, binomial
 * trees); larger ones the pipelined bandwidth algorithms (ring, chain).
 */
export const SMALL_BYTES = 64 * 1024;

/**
 * The algorithm allReduce uses for `bytes` per rank over `n` ranks; `multiHost` says that the ranks
 * span hosts with the same number of ranks each (so the hierarchical algorithm applies).
 */
export function planAllReduce(bytes: number, n: number, multiHost = false): Algorithm {
  // Across hosts, large messages keep inter-host traffic to each rank's 1/L share.
  if (multiHost && bytes > SMALL_BYTES) return "hierarchical";
  // Two ranks: one exchange moves the same bytes as the ring's two phases, without the second
  // round trip; the ring's pipelining wins only past about 1 MiB (measured over TCP here).
  if (n === 2) return bytes <= 16 * SMALL_BYTES ? "direct" : "ring";
  // More ranks: log2 rounds of pairwise exchanges, which also wake each process fewer times than
  // the ring's 2(n-1) steps; with 4 ranks on 2 cores it beat the ring up to 1 MiB (0.35 vs 0.28
  // GB/s busbw at 1 MiB), the ring won from 2 MiB.
  return bytes <= 16 * SMALL_BYTES ? "recursive_doubling" : "ring";
}

/** The algorithm broadcast uses. */
export function planBroadcast(bytes: number, n: number): Algorithm {
  return bytes <= SMALL_BYTES || n <= 2 ? "binomial" : "chain";
}

/** The algorithm reduce uses. */
export function planReduce(bytes: number, _n: number): Algorithm {
  // Even for 2 ranks the chain wins on large messages: it overlaps receiving with reducing.
  return bytes <= SMALL_BYTES ? "binomial" : "chain";
}

/**
 * The algorithm gather and scatter use for `bytes` per rank over `n` ranks: while the whole result is
 * small, a binomial tree (log2 n rounds, each rank forwarding its subtree's blocks); beyond that,
 * the root exchanges with every rank directly, so no block crosses a link twice.
 */
export function planGather(bytes: number, n: number): "binomial" | "linear" {
  return bytes * n <= SMALL_BYTES && n > 2 ? "binomial" : "linear";
}
