/**
 * @module
 * Runs examples/kmeans.ts, unchanged, on N Worker ranks of this one process:
 * `deno run --allow-read=. examples/kmeans_workers.ts 4`. The ranks share memory directly (no
 * network, no FFI); this program waits until every rank has destroyed its group, then ends.
 */

import { spawnWorkers } from "../mod.ts";

const n = Number(Deno.args[0] ?? 4);
const group = await spawnWorkers(n, new URL("./kmeans.ts", import.meta.url));
try {
  await group.finished();
} finally {
  await group.close();
}
