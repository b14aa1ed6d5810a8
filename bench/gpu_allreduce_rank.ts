/**
 * @module
 * A rank of the GPU allreduce benchmark (started by bench/gpu_bench.ts through the launcher): f32 SUM
 * allReduce of `<MiB>` on the GPU of this host (`LOCAL_RANK % devices`) through `<path>` (ipc or
 * staged), 3 warm-ups then 10 timed calls between barriers; checks the result (every element equals
 * the sum of the ranks' fill values) and prints `RESULT {json}` on rank 0 with the median and busbw.
 * Args: `<MiB> <path>`.
 */

import { initProcessGroup, releaseIpcMappings } from "../collectives/mod.ts";
import { deviceCount, GpuTensor, synchronize, useDevice } from "../gpu/mod.ts";
import { readEnv } from "../config.ts";

const mib = Number(Deno.args[0] ?? "256");
const path = (Deno.args[1] ?? "ipc") as "ipc" | "staged";
const device = (readEnv().localRank ?? 0) % deviceCount();
useDevice(device);
const pg = await initProcessGroup({ timeoutMs: 120_000 });
const n = (mib << 20) / 4;
const fill = new Float32Array(n).fill(pg.rank + 1);
using t = GpuTensor.fromHost(fill, { device });
const gpu = { path, keepMapped: true };
const times: number[] = [];
for (let i = 0; i < 13; i++) {
  if (i === 12) t.copyFromHost(fill); // the last call's result is checked
  await pg.barrier();
  synchronize(device);
  const t0 = performance.now();
  await pg.allReduce(t, { op: "sum", gpu });
  synchronize(device);
  if (i >= 3 && i < 12) times.push(performance.now() - t0);
}
const got = t.toHost() as Float32Array;
const want = (pg.size * (pg.size + 1)) / 2;
let bad = 0;
for (let i = 0; i < n; i += 4097) if (got[i] !== want) bad++;
if (got[n - 1] !== want) bad++;
releaseIpcMappings(); // before any rank frees the buffer the others mapped
await pg.barrier();
times.sort((a, b) => a - b);
const medianMs = times[Math.floor(times.length / 2)];
if (pg.rank === 0) {
  console.log(
    "RESULT " + JSON.stringify({
      op: `allreduce_${path}`,
      ranks: pg.size,
      bytes: n * 4,
      s: medianMs / 1e3,
      busGBps: (n * 4 * 2 * (pg.size - 1) / pg.size) / (medianMs / 1e3) / 1e9,
      algGBps: (n * 4) / (medianMs / 1e3) / 1e9,
      correct: bad === 0,
    }),
  );
}
await pg.destroy();
