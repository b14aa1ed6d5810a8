/**
 * @module
 * The data set of the k-means example: `POINTS` points in `DIM` dimensions around `K` centres, each
 * point a pure function of its index (so any rank can make its shard, and a test the whole set).
 */

/** Dimensions of a point. */
export const DIM = 4;
/** Clusters. */
export const K = 5;
/** Points in the whole data set. */
export const POINTS = 200_000;

/** A uniform number in [0, 1) from (i, j): a small integer hash, the same on every machine. */
function unit(i: number, j: number): number {
  let x = Math.imul(i ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(j + 1, 0xc2b2ae35);
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return (x >>> 0) / 2 ** 32;
}

/** Writes point `i` into `out` at `off`: centre `i mod K` (spaced 5 apart) plus noise in [-3, 3). */
export function point(i: number, out: Float64Array, off: number): void {
  const c = i % K;
  for (let j = 0; j < DIM; j++) out[off + j] = ((c * (j + 1)) % K) * 5 + (unit(i, j) * 6 - 3);
}

/** The points of `rank`'s shard (indices `rank, rank + size, ...`), row after row. */
export function shard(rank: number, size: number, total = POINTS): Float64Array {
  const n = Math.ceil((total - rank) / size);
  const out = new Float64Array(Math.max(0, n) * DIM);
  for (let i = rank, row = 0; i < total; i += size, row++) point(i, out, row * DIM);
  return out;
}

/**
 * The starting centroids: K data points (one near each centre, but off it, so the iterations have
 * work), the same on every rank without communication.
 */
export function initialCentroids(): Float64Array {
  const c = new Float64Array(K * DIM);
  for (let k = 0; k < K; k++) point(1000 + k * 7, c, k * DIM);
  return c;
}

/**
 * One assignment pass over `points`: adds each point to its nearest centroid's row of `sums`
 * (K x DIM), counts it in `sums[K * DIM + k]`, and adds its squared distance to `sums[K * (DIM + 1)]`.
 */
export function assign(points: Float64Array, centroids: Float64Array, sums: Float64Array): void {
  const n = points.length / DIM;
  for (let p = 0; p < n; p++) {
    let best = 0;
    let bestD = Infinity;
    for (let k = 0; k < K; k++) {
      let d = 0;
      for (let j = 0; j < DIM; j++) {
        const e = points[p * DIM + j] - centroids[k * DIM + j];
        d += e * e;
      }
      if (d < bestD) [best, bestD] = [k, d];
    }
    for (let j = 0; j < DIM; j++) sums[best * DIM + j] += points[p * DIM + j];
    sums[K * DIM + best] += 1;
    sums[K * (DIM + 1)] += bestD;
  }
}
