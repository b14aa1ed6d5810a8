/**
 * @module
 * The program each benchmark rank runs (started by bench/main.ts through the launcher): joins the job
 * from env://, warms up, then prepares, checks and times every row of the run, in order. Rank 0 prints
 * `CASE <i>` as row i starts and `ROW <json>` once it is measured (row.ts); the parent does the rest.
 * Argument: the {@link RunConfig} as JSON. As a Worker rank (bench --transport worker) the config and
 * forced algorithm come as its data, and rank 0 posts its lines to the main thread.
 */

import { type Algorithm, initProcessGroup, isWorkerRank, workerData } from "../collectives/mod.ts";
import { enumerateCases, type RunConfig } from "./cases.ts";
import { measure } from "./measure.ts";
import { Buffers, prepare } from "./ops.ts";
import { caseLine, rowLine } from "./row.ts";
import { ucxReport } from "./ucx_report.ts";

const inWorker = isWorkerRank();
const data = inWorker ? await workerData<{ cfg: RunConfig; algo: Algorithm | "auto" }>() : null;
const cfg = data ? data.cfg : JSON.parse(Deno.args[0]) as RunConfig;
// The heartbeat's thread starts before the rendezvous, not a second after the group forms (the default,
// which spares a small job's start-up): its boot takes 100-200 ms of a core per rank, and landing inside a
// timed row it made that row's p99 and spread (4 ranks, 16 MiB: cv 100-160% against 25-40%, 2026-12-08).
// The beats themselves still run during every row.
const heartbeat = { startMs: 0 };
const pg = await initProcessGroup(data ? { algorithm: data.algo, heartbeat } : { heartbeat });
// Warm the JIT and the connections before the first row, which is otherwise measured cold.
const warm = new Float32Array(256);
for (let i = 0; i < 300; i++) {
  await pg.allReduce(warm);
  await pg.broadcast(warm);
  await pg.barrier();
}
// Over UCX, say which wires UCX chose (after the warm-up, so every endpoint is wired up).
if (pg.backend === "ucx" && pg.rank === 0) { for (const line of ucxReport()) console.error(line); }
const bufs = new Buffers(pg, cfg.alloc);
const post = (m: unknown) => (globalThis as unknown as { postMessage(m: unknown): void }).postMessage(m);
const say = (line: string) => {
  if (pg.rank !== 0) return;
  if (inWorker) post({ benchLine: line });
  else console.log(line);
};
for (const c of enumerateCases(cfg, pg.size)) {
  say(caseLine(c.index));
  const m = await measure(pg, c.index, await prepare(pg, c, bufs, cfg.mutant), cfg);
  say(rowLine({ index: c.index, ...m, transport: pg.backend }));
}
await pg.destroy();
