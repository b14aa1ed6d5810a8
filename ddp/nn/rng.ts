/**
 * @module
 * A small seeded generator (mulberry32) so that weight initialization and shuffling are the same on
 * every rank and in every run.
 */

/** Returns a function giving uniform numbers in [0, 1), fully determined by `seed` (any integer). */
export function seededRandom(seed: number): () => number {
  let s = (seed | 0) ^ 0x9e3779b9;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
