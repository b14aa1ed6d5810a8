/**
 * @module
 * The time budget of one small same-host allReduce, layer by layer (issue 23). Every rank builds the
 * call path several times over shared memory, each on its own segment, and times N calls through it
 * with one more layer left out each time: the public call awaited; not awaited; HostCalls (checks,
 * route, call record); the arena backend's tiny entry (what HostCalls calls for a tiny payload) and its
 * general one (fingerprint, queue, monitor); the same with a no-op monitor;
 * the arena engine alone (publish, wait, reduce); the handoff alone (no payload). In-process loops
 * time the single layers (checks, route, monitor, clock, await) without a peer. Run it on local ranks:
 * `deno task launch --nproc-per-node 2 bench/layer_budget.ts [calls] [reps]`. What it prints is the
 * per-call median over reps (rank 0, microseconds); docs/benchmarks.md keeps the table.
 */

import { ReduceOp } from "../dtype.ts";
import { ArenaBackend } from "../collectives/arena/arena_backend.ts";
import { allReduceShmSmall } from "../collectives/arena/allreduce_shm.ts";
import { barrierShm } from "../collectives/arena/barrier_shm.ts";
import { Arena, type Fingerprint, type WaitContext } from "../collectives/arena/shm_arena.ts";
import type { OpRun } from "../collectives/backend.ts";
import type { ChannelBackend } from "../collectives/channels/channel_backend.ts";
import { type Call, OpKind } from "../collectives/comm.ts";
import { OpMonitor } from "../collectives/diagnostics/op_monitor.ts";
import { HostCalls } from "../collectives/host_calls.ts";
import { OpQueue } from "../collectives/op_queue.ts";
import { ProcessGroup } from "../collectives/process_group.ts";
import { Router } from "../collectives/route.ts";
import { ArgCheck } from "../collectives/validate.ts";
import { ShmTransport } from "../transports/shm/transport.ts";
import {
  BUDGET_TIMEOUT_MS,
  budgetJob,
  noMonitor,
  type Step,
  timeVariants,
  transportMaker,
} from "./budget_kit.ts";
import { median } from "./stats.ts";

const CALLS = Number(Deno.args[0] ?? 20000);
const REPS = Number(Deno.args[1] ?? 5);
const SIZES = [8, 256, 4096];
const TIMEOUT_MS = BUDGET_TIMEOUT_MS;

const rdzv = await budgetJob();
const { rank, worldSize: size } = rdzv;
/** A fresh transport per variant (its own links or segment). */
const transport = transportMaker(rdzv, "budget", (o) => ShmTransport.create(o));

/** The path with its layers, each a way to run one allReduce on its own segment. */
async function variants(): Promise<[string, Step][]> {
  const out: [string, Step][] = [];
  {
    const pg = new ProcessGroup(await transport(), { timeoutMs: TIMEOUT_MS, group: 1 });
    await pg.connect();
    out.push(["public call, awaited", async (x) => await pg.allReduce(x)]);
  }
  {
    const pg = new ProcessGroup(await transport(), { timeoutMs: TIMEOUT_MS, group: 2 });
    await pg.connect();
    out.push(["public call, not awaited", (x) => pg.allReduce(x)]);
  }
  const backend = async (monitor: OpMonitor | null, channels = false) => {
    const t = await transport();
    if (channels) await Promise.all(Array.from({ length: size }, (_, p) => p === rank ? null : t.channel(p)));
    const queue = new OpQueue(
      rank,
      monitor ?? new OpMonitor({ rank, size, group: 3, capacity: 2000 }),
      () => Promise.resolve(),
    );
    const arena = new ArenaBackend(t.arena()!, 1 << 20, queue);
    const router = new Router({ rank, size, transport: "shm" });
    router.useArena(arena.chunkBytes);
    return { queue, arena, router };
  };
  {
    const { queue, arena, router } = await backend(null);
    const calls = new HostCalls({
      rank,
      size,
      timeoutMs: TIMEOUT_MS,
      check: new ArgCheck(rank, size),
      router,
      queue,
      channels: null as unknown as ChannelBackend,
      arena: () => arena,
    });
    out.push(["HostCalls (checks, route, record, backend)", (x) => calls.allReduce(x, {})]);
  }
  const runOf = (router: Router, bytes: number): OpRun => ({
    call: {
      name: "allReduce",
      kind: OpKind.allReduce,
      dtype: "f32",
      count: bytes / 4,
      root: -1,
      op: ReduceOp.SUM,
      seq: 0,
    },
    route: router.route("allReduce", bytes),
    timeoutMs: TIMEOUT_MS,
  });
  {
    const { arena, router } = await backend(null);
    const runs = new Map(SIZES.map((b) => [b, runOf(router, b)]));
    out.push([
      "arena backend, tiny entry (record reused, fingerprint, queue, monitor, engine)",
      (x) => arena.allReduceTiny(runs.get(x.byteLength)!.call, x, TIMEOUT_MS, undefined),
    ]);
  }
  {
    const { arena, router } = await backend(null);
    const runs = new Map(SIZES.map((b) => [b, runOf(router, b)]));
    out.push([
      "arena backend, general entry (fingerprint, queue, monitor, engine)",
      (x) => arena.allReduce(runs.get(x.byteLength)!, x),
    ]);
  }
  {
    const { arena, router } = await backend(null, true);
    const runs = new Map(SIZES.map((b) => [b, runOf(router, b)]));
    out.push([
      "arena backend, the transport's channels open",
      (x) => arena.allReduce(runs.get(x.byteLength)!, x),
    ]);
  }
  {
    const { arena, router } = await backend(noMonitor);
    const runs = new Map(SIZES.map((b) => [b, runOf(router, b)]));
    out.push(["arena backend, monitor stubbed", (x) => arena.allReduce(runs.get(x.byteLength)!, x)]);
  }
  const engine = async () => {
    const a = new Arena((await transport()).arena()!);
    const ctx: WaitContext = {
      op: "allReduce",
      deadline: 0,
      timeoutMs: TIMEOUT_MS,
      globalRank: rank,
      globalOf: Array.from({ length: size }, (_, r) => r),
      describe: (fp) => ({ ...fp }),
    };
    return { a, ctx };
  };
  const fpOf = (bytes: number): Fingerprint => ({
    kind: OpKind.allReduce,
    op: 0,
    dtype: 0,
    count: bytes / 4,
    root: -1,
    alloc: -1,
    offset: 0,
  });
  {
    const { a, ctx } = await engine();
    const calls = new Map(SIZES.map((b) => [b, runOf(new Router({ rank, size, transport: "shm" }), b).call]));
    const fps = new Map(SIZES.map((b) => [b, fpOf(b)]));
    out.push(["engine: publish, wait, reduce", (x) => {
      const n = x.byteLength;
      return allReduceShmSmall(a, calls.get(n)!, fps.get(n)!, x, ctx);
    }]);
  }
  {
    const { a, ctx } = await engine();
    const fps = new Map(SIZES.map((b) => [b, fpOf(b)]));
    out.push(["engine: copy in and handoff (no reduce)", (x) => {
      const p = a.begin(fps.get(x.byteLength)!, ctx, x);
      return typeof p === "number" ? undefined : p.then(() => {});
    }]);
  }
  {
    const { a, ctx } = await engine();
    const fp = fpOf(8);
    out.push(["engine: handoff only (barrier)", () => barrierShm(a, fp, ctx)]);
  }
  return out;
}

/** Microseconds per call of a single-process loop. */
function local(n: number, f: () => unknown): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f();
  return ((performance.now() - t0) * 1000) / n;
}

const results = await timeVariants(await variants(), SIZES, CALLS, REPS, 1);

// Single layers in one process, no peer.
const x8 = new Float32Array(2);
const check = new ArgCheck(rank, size);
const router = new Router({ rank, size, transport: "shm" });
router.useArena(1 << 20);
const mon = new OpMonitor({ rank, size, group: 7, capacity: 2000 });
const call: Call = {
  name: "allReduce",
  kind: OpKind.allReduce,
  dtype: "f32",
  count: 2,
  root: -1,
  op: ReduceOp.SUM,
  seq: 0,
};
const opts = {};
const singles: [string, () => unknown][] = [
  ["checks: ArgCheck.reduction", () => check.reduction("allReduce", x8, opts)],
  ["route: Router.route", () => router.route("allReduce", 8, undefined, false)],
  ["monitor: begin + end (fast op)", () => mon.end(mon.begin(call, true), call)],
  ["monitor: begin + end (timed op)", () => mon.end(mon.begin(call, false), call)],
  ["clock: performance.now()", () => performance.now()],
  ["clock: Date.now()", () => Date.now()],
];
const singleRes: [string, number][] = [];
for (const [name, f] of singles) {
  local(100_000, f);
  singleRes.push([name, median(Array.from({ length: REPS }, () => local(200_000, f)))]);
}
const resolved = Promise.resolve();
const awaitUs = median(
  await Promise.all([0]).then(async () => {
    const v: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const t0 = performance.now();
      for (let i = 0; i < 200_000; i++) await resolved;
      v.push(((performance.now() - t0) * 1000) / 200_000);
    }
    return v;
  }),
);
singleRes.push(["await of a resolved promise", awaitUs]);

if (rank === 0) {
  console.log(
    `# layer budget: ${size} ranks, shm, float32 allReduce, ${CALLS} calls x ${REPS} reps, us per call`,
  );
  console.log("# bytes\tpath\tmedian\tmin\tmax");
  for (const [key, v] of results) {
    console.log(
      `${key}\t${median(v).toFixed(3)}\t${Math.min(...v).toFixed(3)}\t${Math.max(...v).toFixed(3)}`,
    );
  }
  console.log("# single layers, one process");
  for (const [name, us] of singleRes) console.log(`-\t${name}\t${us.toFixed(3)}`);
}
mon.close();
Deno.exit(0);
