/**
 * @module
 * Statistics of one row's timed iterations (each already the slowest rank's time): median, mean,
 * 99th percentile, minimum and coefficient of variation. Pure functions, shared by the choir ranks
 * and by the tests; the Python comparison scripts compute the same figures the same way.
 */

/** Summary of a row's iteration times, in microseconds. */
export interface TimeStats {
  /** Median time. */
  timeUs: number;
  /** Mean time. */
  meanUs: number;
  /** 99th percentile (nearest rank at or above 99%). */
  p99Us: number;
  /** Fastest iteration. */
  minUs: number;
  /** Standard deviation over the mean, percent. */
  cvPct: number;
  /** Iterations. */
  iters: number;
}

/** Summarizes per-iteration times given in milliseconds. */
export function summarize(timesMs: ArrayLike<number>): TimeStats {
  const k = timesMs.length;
  if (k === 0) return { timeUs: NaN, meanUs: NaN, p99Us: NaN, minUs: NaN, cvPct: NaN, iters: 0 };
  const s = Float64Array.from(timesMs).sort();
  const median = k % 2 ? s[(k - 1) / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
  let sum = 0;
  for (let i = 0; i < k; i++) sum += s[i];
  const mean = sum / k;
  let sq = 0;
  for (let i = 0; i < k; i++) sq += (s[i] - mean) ** 2;
  const sd = Math.sqrt(sq / k);
  return {
    timeUs: median * 1000,
    meanUs: mean * 1000,
    p99Us: s[Math.min(k - 1, Math.ceil(0.99 * k) - 1)] * 1000,
    minUs: s[0] * 1000,
    cvPct: mean > 0 ? (sd / mean) * 100 : 0,
    iters: k,
  };
}

/** The median of `xs` (NaN when empty). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length;
  if (k === 0) return NaN;
  return k % 2 ? s[(k - 1) / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
}
