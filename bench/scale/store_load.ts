/**
 * @module
 * The store's start-up load, through the public store API only, so that it runs against any version of
 * choir (`--choir PATH/transports/mod.ts`): N simulated ranks in this process, each with its own TcpStore
 * client of one store server, do what a rank does at init: join barrier, publish an address, read the
 * addresses it needs (`neighbours`: ring and tree neighbours; `mesh`: every rank's), barrier again.
 * Prints one line per phase (the time until the last rank finished it), the store requests, the peak
 * connections the server held (from `ss`) and writes JSON with `--out`. Reads use one `multiGet` where
 * the store has it, else one `get` after another.
 *
 * usage: deno run --allow-all bench/scale/store_load.ts --n 256 [--variant neighbours|mesh]
 *        [--choir ../main/transports/mod.ts] [--out load.json] [--label before]
 */

import { parseArgs } from "node:util";
import { sampleConnections } from "./conn_sampler.ts";
import { neighbours } from "./neighbours.ts";

/** What this script uses of a choir `transports/mod.ts`, old or new. */
interface StoreLike {
  set(key: string, value: string): Promise<void>;
  check(keys: string[]): Promise<boolean>;
  get(key: string): Promise<Uint8Array>;
  multiGet?(keys: string[], timeoutMs?: number): Promise<Uint8Array[]>;
  close(): Promise<void>;
}
interface ServerLike {
  port: number;
  close(): Promise<void>;
  stats?(): Promise<Record<string, number> & { fdSend?: Record<string, number> }>;
}
interface ChoirStoreApi {
  startStoreServer(o: { token: string; port?: number }): Promise<ServerLike>;
  TcpStore: new (
    o: { host: string; port: number; token: string; rank: number; timeoutMs: number },
  ) => StoreLike;
  joinBarrier(s: StoreLike, rank: number, size: number, timeoutMs: number, tag: string): Promise<void>;
}

/** One run's result. */
export interface LoadResult {
  label: string;
  n: number;
  variant: string;
  /** Time for every client to make its first contact with the server, before the phases, ms. */
  connectMs: number;
  /** Time until the last rank finished each phase, from the start, ms (cumulative). */
  phasesMs: Record<string, number>;
  totalMs: number;
  /** Store calls made by the ranks (each one HTTP request). */
  requests: number;
  peakConnections: number;
  multiGet: boolean;
  server?: Record<string, number> & { fdSend?: Record<string, number> };
}

const PHASES = ["join", "publish", "read", "barrier"] as const;

/** Counts every call made on `store` into `count`. */
function counted(store: StoreLike, count: { n: number }): StoreLike {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        if (prop !== "close") count.n++;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/** Runs the load once. */
export async function storeLoad(
  api: ChoirStoreApi,
  n: number,
  variant: "neighbours" | "mesh",
  label: string,
  timeoutMs = 600_000,
): Promise<LoadResult> {
  const token = crypto.randomUUID();
  const server = await api.startStoreServer({ token, port: 0 });
  const sampler = sampleConnections(server.port);
  const count = { n: 0 };
  const stores = Array.from(
    { length: n },
    (_, rank) =>
      counted(new api.TcpStore({ host: "127.0.0.1", port: server.port, token, rank, timeoutMs }), count),
  );
  // Every client contacts the server first, as createStore does (and torch's TCPStore constructor).
  const c0 = performance.now();
  await Promise.all(stores.map((s) => s.check([])));
  const connectMs = Math.round(performance.now() - c0);
  const ends = PHASES.map(() => 0);
  const t0 = performance.now();
  const mark = (i: number) => ends[i] = Math.max(ends[i], performance.now() - t0);
  const hasMulti = typeof stores[0].multiGet === "function";
  const dec = new TextDecoder();
  await Promise.all(stores.map(async (s, rank) => {
    await api.joinBarrier(s, rank, n, timeoutMs, "load/join");
    mark(0);
    await s.set(`addr/${rank}`, `127.0.0.1:${30000 + rank}`);
    mark(1);
    const peers = variant === "mesh"
      ? Array.from({ length: n }, (_, r) => r).filter((r) => r !== rank)
      : neighbours(rank, n);
    const keys = peers.map((p) => `addr/${p}`);
    const values = hasMulti ? await s.multiGet!(keys, timeoutMs) : [];
    if (!hasMulti) { for (const k of keys) values.push(await s.get(k)); }
    if (values.some((v, i) => dec.decode(v) !== `127.0.0.1:${30000 + peers[i]}`)) {
      throw new Error(`rank ${rank} read a wrong address`);
    }
    mark(2);
    await api.joinBarrier(s, rank, n, timeoutMs, "load/done");
    mark(3);
  }));
  const totalMs = performance.now() - t0;
  const stats = await server.stats?.();
  await Promise.all(stores.map((s) => s.close()));
  const peakConnections = await sampler.stop();
  await server.close();
  const phasesMs = Object.fromEntries(PHASES.map((p, i) => [p, Math.round(ends[i])]));
  return {
    label,
    n,
    variant,
    connectMs,
    phasesMs,
    totalMs: Math.round(totalMs),
    requests: count.n,
    peakConnections,
    multiGet: hasMulti,
    server: stats,
  };
}

/** The result as one table row. */
export function loadLine(r: LoadResult): string {
  const ph = PHASES.map((p) => String(r.phasesMs[p]).padStart(8)).join(" ");
  return `${r.label.padEnd(10)} ${String(r.n).padStart(6)} ${r.variant.padEnd(10)} ${
    String(r.connectMs).padStart(10)
  } ${ph} ${String(r.totalMs).padStart(8)} ${String(r.requests).padStart(9)} ${
    String(r.peakConnections).padStart(7)
  }`;
}

/** The table's header. */
export const LOAD_HEADER = `${"label".padEnd(10)} ${"ranks".padStart(6)} ${"variant".padEnd(10)} ${
  "connect_ms".padStart(10)
} ${PHASES.map((p) => `${p}_ms`.padStart(8)).join(" ")} ${"total_ms".padStart(8)} ${"requests".padStart(9)} ${
  "peak_cx".padStart(7)
}`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      n: { type: "string", default: "256" },
      variant: { type: "string", default: "neighbours" },
      choir: { type: "string" },
      out: { type: "string" },
      label: { type: "string" },
    },
  });
  const variant = values.variant === "mesh" ? "mesh" : "neighbours";
  const url = values.choir
    ? new URL(values.choir, `file://${Deno.cwd()}/`).href
    : new URL("../../transports/mod.ts", import.meta.url).href;
  const api = (await import(url)) as ChoirStoreApi;
  const label = values.label ?? (values.choir ? values.choir : "this tree");
  const rows: LoadResult[] = [];
  console.log(
    "# connect_ms: every client's first contact, untimed in total_ms; phase columns: ms until the last rank " +
      "finished that phase, from the start (cumulative)",
  );
  console.log(LOAD_HEADER);
  for (const n of values.n.split(",").map(Number)) {
    const r = await storeLoad(api, n, variant, label);
    rows.push(r);
    console.log(loadLine(r));
    if (r.server?.fdSend) console.log(`# server libc sends: ${JSON.stringify(r.server.fdSend)}`);
  }
  if (values.out) {
    await Deno.writeTextFile(values.out, rows.map((r) => JSON.stringify(r)).join("\n") + "\n", {
      append: true,
    });
  }
}
