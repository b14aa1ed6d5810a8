/**
 * @module
 * One process of the scale harness (harness.ts): hosts ranks [first, first+count) of an N-rank job as
 * in-process objects, each with its own store client and its own TCP listener, and starts them the way
 * `initProcessGroup()` does (createStore against the external store, then openGroup: join barrier, host
 * ids, transport, connect), then runs one 8-float allReduce (and `--ops K` more, timed together). Prints
 * `READY` once loaded, starts on a `GO` line on stdin, prints `RESULT {json}` (each rank's phase end
 * times, epoch ms) and leaves on `END`.
 *
 * Simulated hosts: ranks are grouped `--per-host` to a host id, so hierarchical plans see several hosts.
 * The transport is TCP throughout (shared memory among simulated ranks would measure something else).
 * With `--choir DIR` the ranks join through DIR's public `initProcessGroup()` instead (any version of
 * choir, e.g. the one before this harness existed); then only `connected` and `first_op` are timed.
 */

import { parseArgs } from "node:util";
import { createStore } from "../../transports/store/mod.ts";
import { openGroup } from "../../collectives/open_group.ts";
import type { ProcessGroup } from "../../collectives/process_group.ts";
import type { Algorithm } from "../../collectives/plan/plan.ts";

/** What one rank reports. */
export interface RankTimes {
  rank: number;
  /** Epoch ms at which each phase ended. */
  t: Record<string, number>;
  /** Links the rank held after the first collective. */
  connections: number;
}

/** What one process reports. */
export interface HostResult {
  ranks: RankTimes[];
  /** This process's resident memory after the first collective, bytes. */
  rss: number;
  error?: string;
}

const now = () => performance.timeOrigin + performance.now();

function lines(): AsyncIterator<string> {
  const dec = new TextDecoderStream();
  const reader = Deno.stdin.readable.pipeThrough(dec);
  return (async function* () {
    let buf = "";
    for await (const chunk of reader) {
      buf += chunk;
      let at;
      while ((at = buf.indexOf("\n")) >= 0) {
        yield buf.slice(0, at).trim();
        buf = buf.slice(at + 1);
      }
    }
  })();
}

/** What the ranks use of another choir's `mod.ts` (`--choir`). */
interface PublicApi {
  initProcessGroup(o: Record<string, unknown>): Promise<ProcessGroup>;
}

async function runRank(
  rank: number,
  o: {
    n: number;
    /** The world's ranks 0..n-1, one frozen array shared by this process's ranks. */
    world: readonly number[];
    port: number;
    token: string;
    perHost: number;
    connect: string;
    timeoutMs: number;
    /** The algorithm forced on the group (undefined: the plan chooses). */
    algo?: Algorithm;
    /** allReduces after the first, timed together as the `more_ops` phase. */
    ops: number;
  },
  api?: PublicApi,
): Promise<{ times: RankTimes; pg: ProcessGroup }> {
  const t: Record<string, number> = {};
  if (api) {
    const pg = await api.initProcessGroup({
      rank,
      worldSize: o.n,
      token: o.token,
      timeoutMs: o.timeoutMs,
      transport: "tcp",
      connect: o.connect,
      ...(o.algo ? { algorithm: o.algo } : {}),
      env: {
        masterAddr: "127.0.0.1",
        masterPort: o.port,
        storeExternal: true,
        hostId: `sim-host-${Math.floor(rank / o.perHost)}`,
      },
    });
    t.connected = now();
    await allReduces(pg, rank, o, t);
    return { times: { rank, t, connections: (pg as { connections?: number }).connections ?? -1 }, pg };
  }
  const rdzv = await createStore("env://", {
    rank,
    worldSize: o.n,
    token: o.token,
    timeoutMs: o.timeoutMs,
    env: { masterAddr: "127.0.0.1", masterPort: o.port, storeExternal: true },
  });
  t.store = now();
  const pg = await openGroup({
    job: {
      store: rdzv.store,
      token: o.token,
      transport: "tcp",
      bind: "127.0.0.1",
      hostIdOverride: `sim-host-${Math.floor(rank / o.perHost)}`,
      connect: o.connect,
      algorithm: o.algo,
    },
    tag: "pg0",
    // One list for all of this process's ranks: a real process, holding one rank, builds it once.
    ranks: o.world,
    rank,
    timeoutMs: o.timeoutMs,
    watchDuplicates: true,
    onDestroy: () => rdzv.close(),
    onPhase: (p) => t[p] = now(),
  });
  await allReduces(pg, rank, o, t);
  return { times: { rank, t, connections: pg.connections }, pg };
}

/** The first 8-float allReduce (phase `first_op`), then `o.ops` more (phase `more_ops`), each checked. */
async function allReduces(
  pg: Pick<ProcessGroup, "allReduce">,
  rank: number,
  o: { n: number; ops: number },
  t: Record<string, number>,
): Promise<void> {
  const x = new Float32Array(8);
  for (let k = 0; k <= o.ops; k++) {
    x.fill(1);
    await pg.allReduce(x);
    if (x[0] !== o.n) throw new Error(`rank ${rank}: allReduce ${k + 1} gave ${x[0]}, not ${o.n}`);
    if (k === 0) t.first_op = now();
  }
  if (o.ops > 0) t.more_ops = now();
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      first: { type: "string" },
      count: { type: "string" },
      n: { type: "string" },
      port: { type: "string" },
      token: { type: "string" },
      "per-host": { type: "string", default: "8" },
      connect: { type: "string", default: "auto" },
      timeout: { type: "string", default: "120000" },
      choir: { type: "string" },
      algo: { type: "string" },
      ops: { type: "string", default: "0" },
    },
  });
  const first = Number(values.first);
  const count = Number(values.count);
  const n = Number(values.n);
  const o = {
    n,
    world: Object.freeze(Array.from({ length: n }, (_, r) => r)),
    port: Number(values.port),
    token: values.token ?? "",
    perHost: Number(values["per-host"]),
    connect: values.connect,
    timeoutMs: Number(values.timeout),
    algo: values.algo as Algorithm | undefined,
    ops: Number(values.ops),
  };
  const api = values.choir
    ? (await import(new URL("mod.ts", `file://${values.choir.replace(/\/?$/, "/")}`).href)) as PublicApi
    : undefined;
  const input = lines();
  console.log("READY");
  while ((await input.next()).value !== "GO") { /* wait for the start */ }
  const result: HostResult = { ranks: [], rss: 0 };
  let pgs: ProcessGroup[] = [];
  try {
    const done = await Promise.all(Array.from({ length: count }, (_, i) => runRank(first + i, o, api)));
    result.ranks = done.map((d) => d.times);
    pgs = done.map((d) => d.pg);
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  }
  result.rss = Deno.memoryUsage().rss;
  console.log(`RESULT ${JSON.stringify(result)}`);
  // Stay up until every process has its result: a peer may still read from this one's ranks.
  for (let l = await input.next(); !l.done && l.value !== "END"; l = await input.next()) { /* wait */ }
  await Promise.all(pgs.map((pg) => pg.destroy().catch(() => {})));
  Deno.exit(result.error ? 1 : 0);
}
