/**
 * @module
 * `deno task bench --scale 64,256,1024`: the start-up of N simulated ranks through the real store and
 * the real connection logic. The store runs here, on its Worker thread, as the launcher runs it; the ranks
 * run in `--procs` processes (rank_host.ts), each rank an object with its own store client and listener.
 * Once every process has loaded, all start at once; each rank creates its store client, joins, exchanges
 * host ids, listens, connects (lazily above 16 ranks) and runs one allReduce. Prints per N the time until
 * the last rank finished each phase, the store's requests and the peak connections it held (from `ss`),
 * the TCP links the ranks hold, and resident memory per rank; `--out` appends JSON lines, `--plot` draws
 * time, requests and connections against N (SVG; `--from` adds rows of earlier runs). `--choir DIR` runs
 * another checkout of choir instead (its store server and its public `initProcessGroup()`: the "before").
 */

import type { ScaleRow } from "./scale_row.ts";
import { parseArgs } from "node:util";
import { startStoreServer, type StoreServer } from "../../transports/store/mod.ts";
import { sampleConnections } from "./conn_sampler.ts";
import type { HostResult } from "./rank_host.ts";
import { scalePlotSvg } from "./scale_plot.ts";

export type { ScaleRow };

/** The phases, in order, as rank_host.ts names them. */
export const PHASES = ["store", "joined", "transport", "connected", "first_op", "more_ops"] as const;

const ROOT = new URL(".", import.meta.url);

async function readLines(stream: ReadableStream<Uint8Array>, onLine: (l: string) => void): Promise<void> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let at;
    while ((at = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, at));
      buf = buf.slice(at + 1);
    }
  }
}

/** Runs the start-up of `n` simulated ranks once. */
export async function runScale(
  n: number,
  o: {
    procs: number;
    connect: string;
    perHost: number;
    timeoutMs: number;
    cpuProf?: string;
    choir?: string;
    /** The algorithm forced on every rank's group (`--algo`; undefined: the plan chooses). */
    algo?: string;
    /** allReduces after the first (`--ops`), the `more_ops` phase. */
    ops?: number;
    /** Where the store serves: its Worker thread (default, as the launcher runs it) or this thread (to profile it). */
    storeThread?: "worker" | "main";
  },
): Promise<ScaleRow> {
  const token = crypto.randomUUID();
  const start = o.choir
    ? ((await import(new URL("transports/mod.ts", `file://${o.choir.replace(/\/?$/, "/")}`).href)) as {
      startStoreServer: typeof startStoreServer;
    }).startStoreServer
    : startStoreServer;
  // An older server has no stats(): its request count reads -1.
  const server = (await start({ token, port: 0, thread: o.storeThread })) as
    & Omit<StoreServer, "stats">
    & Partial<StoreServer>;
  const sampler = sampleConnections(server.port);
  const procs = Math.max(1, Math.min(o.procs, n));
  const launch0 = performance.now();
  const hosts = Array.from({ length: procs }, (_, p) => {
    const first = Math.floor((p * n) / procs);
    const count = Math.floor(((p + 1) * n) / procs) - first;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        ...(o.cpuProf ? ["--cpu-prof", `--cpu-prof-dir=${o.cpuProf}`] : []),
        new URL("rank_host.ts", ROOT).pathname,
        `--first=${first}`,
        `--count=${count}`,
        `--n=${n}`,
        `--port=${server.port}`,
        `--token=${token}`,
        `--per-host=${o.perHost}`,
        `--connect=${o.connect}`,
        `--timeout=${o.timeoutMs}`,
        ...(o.choir ? [`--choir=${o.choir}`] : []),
        ...(o.algo ? [`--algo=${o.algo}`] : []),
        `--ops=${o.ops ?? 0}`,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const ready = Promise.withResolvers<void>();
    const result = Promise.withResolvers<HostResult>();
    const reading = readLines(child.stdout, (l) => {
      if (l === "READY") ready.resolve();
      else if (l.startsWith("RESULT ")) result.resolve(JSON.parse(l.slice(7)) as HostResult);
    }).then(() => result.reject(new Error(`rank process ${p} ended without a result`)));
    const writer = child.stdin.getWriter();
    return { child, ready: ready.promise, result: result.promise, writer, reading };
  });
  const say = (what: string) =>
    Promise.all(hosts.map((h) => h.writer.write(new TextEncoder().encode(`${what}\n`)).catch(() => {})));
  const limit = AbortSignal.timeout(o.timeoutMs + 60_000);
  limit.addEventListener("abort", () => hosts.forEach((h) => h.child.kill("SIGKILL")));
  let row: ScaleRow;
  let peak = -1;
  try {
    await Promise.all(hosts.map((h) => h.ready));
    const launchMs = performance.now() - launch0;
    const t0 = performance.timeOrigin + performance.now();
    await say("GO");
    const results = await Promise.all(hosts.map((h) => h.result));
    await say("END");
    await Promise.all(hosts.map((h) => h.child.status));
    const failed = results.find((r) => r.error);
    if (failed) throw new Error(`a rank failed: ${failed.error}`);
    const ranks = results.flatMap((r) => r.ranks);
    const stats = server.stats ? await server.stats() : { requests: -1, byRoute: {} };
    const phasesMs: Record<string, number> = {};
    for (const ph of PHASES) {
      if (ranks.every((r) => r.t[ph] !== undefined)) {
        phasesMs[ph] = Math.round(Math.max(...ranks.map((r) => r.t[ph])) - t0);
      }
    }
    row = {
      label: o.choir ?? "this tree",
      n,
      procs,
      connect: o.connect,
      launchMs: Math.round(launchMs),
      phasesMs,
      totalMs: phasesMs.first_op,
      requests: stats.requests,
      byRoute: stats.byRoute,
      peakStoreConnections: -1,
      links: ranks.some((r) => r.connections < 0) ? -1 : ranks.reduce((a, r) => a + r.connections, 0) / 2,
      rssMiBPerRank: Math.round((results.reduce((a, r) => a + r.rss, 0) / n / 2 ** 20) * 10) / 10,
    };
  } finally {
    for (const h of hosts) {
      try {
        h.child.kill("SIGKILL");
      } catch { /* exited */ }
      await h.writer.close().catch(() => {});
    }
    await Promise.all(hosts.map((h) => h.reading.catch(() => {})));
    peak = await sampler.stop();
    await server.close();
  }
  row.peakStoreConnections = peak;
  return row;
}

/** The table's header line. */
export const SCALE_HEADER = [
  "ranks".padStart(6),
  "procs".padStart(5),
  "connect".padEnd(7),
  "launch_ms".padStart(9),
  ...PHASES.map((p) => `${p}_ms`.padStart(13)),
  "requests".padStart(9),
  "req/rank".padStart(8),
  "store_cx".padStart(8),
  "links".padStart(7),
  "MiB/rank".padStart(8),
].join(" ");

/** One row of the table. */
export function scaleLine(r: ScaleRow): string {
  return [
    String(r.n).padStart(6),
    String(r.procs).padStart(5),
    r.connect.padEnd(7),
    String(r.launchMs).padStart(9),
    ...PHASES.map((p) => String(r.phasesMs[p] ?? "-").padStart(13)),
    String(r.requests).padStart(9),
    (r.requests / r.n).toFixed(1).padStart(8),
    String(r.peakStoreConnections).padStart(8),
    String(r.links).padStart(7),
    r.rssMiBPerRank.toFixed(1).padStart(8),
  ].join(" ");
}

/** `deno task bench --scale ...`: returns the exit code. */
export async function scaleMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      scale: { type: "string" },
      procs: { type: "string", default: "4" },
      connect: { type: "string", default: "auto" },
      "per-host": { type: "string", default: "8" },
      timeout: { type: "string", default: "300000" },
      out: { type: "string" },
      plot: { type: "string" },
      from: { type: "string" },
      "cpu-prof": { type: "string" },
      choir: { type: "string" },
      "store-thread": { type: "string", default: "worker" },
      algo: { type: "string" },
      ops: { type: "string", default: "0" },
    },
  });
  const sizes = (values.scale ?? "64,256").split(",").map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 2)) {
    console.error("bench --scale: expected rank counts of at least 2, as in --scale 64,256,1024");
    return 2;
  }
  const o = {
    procs: Number(values.procs),
    connect: values.connect,
    perHost: Number(values["per-host"]),
    timeoutMs: Number(values.timeout),
    cpuProf: values["cpu-prof"],
    choir: values.choir,
    storeThread: values["store-thread"] === "main" ? "main" as const : "worker" as const,
    algo: values.algo,
    ops: Number(values.ops),
  };
  console.log(
    "# phase columns: ms from the start signal until the last rank finished it (cumulative): store = first " +
      "contact, joined = join barrier, transport = host ids + listen, connected = group ready, first_op = " +
      "first allReduce, more_ops = the --ops K allReduces after it; launch_ms (process start and module " +
      "loading) is not included",
  );
  console.log(SCALE_HEADER);
  const rows: ScaleRow[] = [];
  for (const n of sizes) {
    const row = await runScale(n, o);
    rows.push(row);
    console.log(scaleLine(row));
    if (values.out) await Deno.writeTextFile(values.out, JSON.stringify(row) + "\n", { append: true });
  }
  if (values.plot) {
    const earlier = values.from
      ? (await Deno.readTextFile(values.from)).split("\n").filter((l) => l.trim()).map((l) =>
        JSON.parse(l) as ScaleRow
      )
      : [];
    await Deno.writeTextFile(values.plot, scalePlotSvg([...earlier, ...rows]));
    console.log(`plot: ${values.plot}`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await scaleMain(Deno.args));
