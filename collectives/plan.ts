/**
 * @module
 * Chooses the algorithm of each collective from the message size and the world size. Every rank
 * computes the same choice from the same inputs, so no agreement round is needed.
 */

/** The algorithms a collective may run. */
export type Algorithm = "direct" | "recursive_doubling" | "ring" | "binomial" | "chain" | "dissemination";

/**
 * Messages up to this many bytes per rank use the latency algorithms (direct exchange, binomial
 * trees); larger ones the pipelined bandwidth algorithms (ring, chain).
 */
export const SMALL_BYTES = 64 * 1024;

/** The algorithm allReduce uses for `bytes` per rank over `n` ranks. */
export function planAllReduce(bytes: number, n: number): Algorithm {
  // Two ranks: one exchange moves the same bytes as the ring's two phases, without the second
  // round trip; the ring's pipelining wins only past about 1 MiB (measured over TCP here).
  if (n === 2) return bytes <= 16 * SMALL_BYTES ? "direct" : "ring";
  // More ranks: log2 rounds of pairwise exchanges, which also wake each process fewer times than
  // n-1 concurrent messages when ranks outnumber cores.
  return bytes <= SMALL_BYTES ? "recursive_doubling" : "ring";
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
