/**
 * @module
 * A Hono web service run as N replicas (`deno task launch --nproc-per-node 3 examples/hono_stats.ts
 * --port 8000`: replica r listens on 8000 + r; port 0 picks free ports). Each replica counts its
 * requests and their latencies in a histogram; every second the replicas allReduce those counters,
 * so `GET /stats` on any replica answers for the whole service (`/stats?fresh=1` waits for the next
 * rounds first, so it includes every request any replica served before it). `POST /shutdown` on any replica,
 * with the job token (`Authorization: Bearer $CHOIR_TOKEN`; the launcher takes it from CHOIR_TOKEN or
 * `--token`), stops them all at the next round (the stop flag travels in the same allReduce); without it
 * the answer is 401 and nothing stops.
 */

import { Hono } from "hono";
import { initProcessGroup, readEnv } from "../mod.ts";
import { constantTimeEqual } from "../transports/mod.ts";

const args = Deno.args;
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const basePort = flag("port", 8000);
const intervalMs = flag("interval-ms", 1000);

/** Latency histogram bucket upper bounds, ms (the last bucket is everything slower). */
const BOUNDS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100];

const pg = await initProcessGroup();
// One Float64Array holds everything the replicas combine: SUM for all of it.
const REQUESTS = 0, ERRORS = 1, LATENCY_SUM = 2, BUCKETS = 3;
const PORTS = BUCKETS + BOUNDS.length + 1; // replica r writes its port at PORTS + r, the others 0
const STOP = PORTS + pg.size;
const local = new Float64Array(STOP + 1);
let combined: Float64Array | null = null;
let combinedAt = 0;
let roundDone: () => void = () => {};
let nextRound = new Promise<void>((r) => (roundDone = r));

const app = new Hono();
// Count every request but the service's own endpoints.
app.use("*", async (c, next) => {
  if (c.req.path === "/stats" || c.req.path === "/shutdown") return await next();
  const t0 = performance.now();
  await next();
  const ms = performance.now() - t0;
  local[REQUESTS]++;
  if (c.res.status >= 400) local[ERRORS]++;
  local[LATENCY_SUM] += ms;
  const b = BOUNDS.findIndex((bound) => ms <= bound);
  local[BUCKETS + (b < 0 ? BOUNDS.length : b)]++;
});
app.get("/", (c) => c.text(`hello from replica ${pg.rank} of ${pg.size}\n`));
app.get("/work", (c) => {
  // A little CPU per request, so that latencies spread over the buckets.
  const n = Math.min(Number(c.req.query("n") ?? 1000), 1e7);
  let x = 0;
  for (let i = 0; i < n; i++) x += Math.sqrt(i);
  return c.json({ replica: pg.rank, x });
});
app.get("/stats", async (c) => {
  if (c.req.query("fresh")) {
    // The round in flight may have snapshotted before this request, and a peer's next snapshot may
    // precede it too; the third round from now counts everything every replica served before it.
    for (let i = 0; i < 3; i++) await nextRound;
  }
  return c.json(stats());
});
// Stopping the service is for whoever runs the job: it takes the job token, compared in constant time.
const token = readEnv().token;
const encoder = new TextEncoder();
app.post("/shutdown", (c) => {
  const given = encoder.encode(c.req.header("authorization") ?? "");
  if (!token || !constantTimeEqual(given, encoder.encode(`Bearer ${token}`))) {
    return c.text("POST /shutdown needs the job token (Authorization: Bearer <token>)\n", 401);
  }
  local[STOP] = 1;
  return c.json({ stopping: true, replica: pg.rank });
});

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: basePort === 0 ? 0 : basePort + pg.rank,
  onListen: ({ hostname, port }) => console.log(`replica ${pg.rank} listening on http://${hostname}:${port}`),
}, app.fetch);
local[PORTS + pg.rank] = server.addr.port;

/** The service-wide numbers of the last round, with the p50 and p99 read off the histogram. */
function stats() {
  if (!combined) return { replicas: pg.size, servedBy: pg.rank, ready: false };
  const v = combined;
  const buckets = Array.from(v.subarray(BUCKETS, BUCKETS + BOUNDS.length + 1));
  const requests = v[REQUESTS];
  const quantile = (q: number) => {
    let seen = 0;
    for (let i = 0; i < buckets.length; i++) {
      seen += buckets[i];
      if (seen >= q * requests) return i < BOUNDS.length ? BOUNDS[i] : Infinity;
    }
    return null;
  };
  return {
    replicas: pg.size,
    servedBy: pg.rank,
    ready: true,
    asOf: new Date(combinedAt).toISOString(),
    requests,
    errors: v[ERRORS],
    latencyMs: {
      mean: requests ? v[LATENCY_SUM] / requests : null,
      p50: requests ? quantile(0.5) : null,
      p99: requests ? quantile(0.99) : null,
      buckets: Object.fromEntries(buckets.map((n, i) => [i < BOUNDS.length ? `le_${BOUNDS[i]}` : "inf", n])),
    },
    ports: Array.from(v.subarray(PORTS, PORTS + pg.size)),
  };
}

// Every replica runs the same rounds in the same order: wait, then combine a copy of the counters.
let stop = false;
while (!stop) {
  await new Promise((r) => setTimeout(r, intervalMs));
  const round = local.slice();
  await pg.allReduce(round);
  combined = round;
  combinedAt = Date.now();
  stop = round[STOP] > 0;
  const done = roundDone;
  nextRound = new Promise<void>((r) => (roundDone = r));
  done();
}
// No more rounds: release any `fresh` request still waiting, or shutdown() would wait on it.
roundDone();
nextRound = Promise.resolve();
await server.shutdown();
await pg.destroy();
console.log(`replica ${pg.rank} stopped`);
