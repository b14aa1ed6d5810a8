/**
 * @module
 * choir's point-to-point bandwidth between two ranks, the counterpart of `ucx_perftest -t tag_bw`:
 * rank 0 streams `iters` messages of `size` bytes to rank 1 with pg.send (one at a time, as perftest
 * does with its default window of one), rank 1 receives them with pg.recv; a 1-byte reply ends the
 * timed loop. Prints `TAGBW {json}` with MB/s (2^20 B/s, perftest's unit) and GB/s. Start it with the
 * launcher: `deno task launch --nproc-per-node 2 bench/ucx_tag_bw.ts SIZE ITERS [REPEATS]`.
 */

import { initProcessGroup } from "../collectives/mod.ts";

const size = Number(Deno.args[0] ?? 64 << 20);
const iters = Number(Deno.args[1] ?? 20);
const repeats = Number(Deno.args[2] ?? 3);
const pg = await initProcessGroup();
if (pg.size !== 2) throw new Error(`ucx_tag_bw needs 2 ranks, got ${pg.size}`);
const buf = new Uint8Array(size).fill(pg.rank + 1);
const ack = new Uint8Array(1);

async function round(n: number): Promise<number> {
  await pg.barrier();
  const t0 = performance.now();
  if (pg.rank === 0) {
    for (let i = 0; i < n; i++) await pg.send(buf, { dst: 1 });
    await pg.recv(ack, { src: 1 });
  } else {
    for (let i = 0; i < n; i++) await pg.recv(buf, { src: 0 });
    await pg.send(ack, { dst: 0 });
  }
  return performance.now() - t0;
}

await round(Math.max(2, Math.ceil(iters / 5))); // warm-up: wire-up, registrations, JIT
const mbps: number[] = [];
for (let r = 0; r < repeats; r++) {
  const ms = await round(iters);
  mbps.push((size * iters) / (ms / 1000) / (1 << 20));
}
if (pg.rank === 1 && buf[0] !== 1) throw new Error("rank 1 did not receive rank 0's bytes");
const sorted = [...mbps].sort((a, b) => a - b);
const median = sorted[Math.floor(sorted.length / 2)];
if (pg.rank === 0) {
  console.log(`TAGBW ${
    JSON.stringify({
      transport: pg.backend,
      size,
      iters,
      mbps: mbps.map((x) => Math.round(x)),
      medianMBps: Math.round(median),
      medianGBps: +(median * (1 << 20) / 1e9).toFixed(3),
    })
  }`);
}
await pg.destroy();
