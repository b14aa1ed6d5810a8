/**
 * @module
 * Distributed k-means: each rank makes its shard of a generated data set, and every iteration
 * allReduces the per-cluster sums and counts, so all ranks move the centroids alike. The same file
 * runs on process ranks (`deno task launch --nproc-per-node 2 examples/kmeans.ts`) and on Worker
 * ranks of one process (`deno run --allow-read=. examples/kmeans_workers.ts 4`).
 */

import { initProcessGroup } from "../mod.ts";
import { assign, DIM, initialCentroids, K, POINTS, shard } from "./kmeans_data.ts";

const MAX_ITERATIONS = 100;

// As a process: env:// (the launcher's variables). As a Worker from spawnWorkers(): its Worker group.
const pg = await initProcessGroup();
const t0 = performance.now();
const points = shard(pg.rank, pg.size);
const centroids = initialCentroids();
// K x DIM coordinate sums, then K counts, then the total squared distance.
const sums = new Float64Array(K * DIM + K + 1);
let iterations = 0;
let inertia = 0;
for (let moved = Infinity; moved > 1e-12 && iterations < MAX_ITERATIONS; iterations++) {
  sums.fill(0);
  assign(points, centroids, sums);
  await pg.allReduce(sums); // SUM over every rank's shard
  moved = 0;
  for (let k = 0; k < K; k++) {
    const count = sums[K * DIM + k];
    if (count === 0) continue; // an empty cluster keeps its centroid
    for (let j = 0; j < DIM; j++) {
      const next = sums[k * DIM + j] / count;
      moved = Math.max(moved, Math.abs(next - centroids[k * DIM + j]));
      centroids[k * DIM + j] = next;
    }
  }
  inertia = sums[K * (DIM + 1)];
}
const ms = performance.now() - t0;
if (pg.rank === 0) {
  console.log(
    `k-means on ${pg.size} ${pg.backend} ranks: ${POINTS} points, ${K} clusters, ${iterations} iterations, ` +
      `inertia ${inertia.toFixed(3)}, ${ms.toFixed(0)} ms`,
  );
  console.log(`CENTROIDS ${JSON.stringify(Array.from(centroids, (v) => Number(v.toFixed(9))))}`);
}
await pg.destroy();
