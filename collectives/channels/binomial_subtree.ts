/**
 * @module
 * Where a rank sits in the binomial tree rooted at `root` that gather and scatter walk: its rank
 * relative to the root, and the relative ranks of its subtree, [v, v + span).
 */

/** A rank's place in the binomial tree. */
export interface Subtree {
  /** This rank relative to the root (the root is 0). */
  v: number;
  /** The lowest set bit of `v` (n for the root): the parent is `v - low`, children `v + 2^k < v + low`. */
  low: number;
  /** How many relative ranks from `v` on this rank's subtree holds (itself included). */
  span: number;
  /** The group rank of relative rank `rel`. */
  abs(rel: number): number;
}

/** The subtree of `rank` in the binomial tree of `n` ranks rooted at `root`: below its lowest set bit. */
export function binomialSubtree(rank: number, root: number, n: number): Subtree {
  const v = (rank - root + n) % n;
  const low = v === 0 ? n : v & -v;
  return { v, low, span: Math.min(low, n - v), abs: (rel) => (rel + root) % n };
}
