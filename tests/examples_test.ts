/**
 * @module
 * The examples, run the way their headers say: README's first program under the launcher, the
 * k-means job on Worker ranks and on launcher processes (against a serial reference), and the Hono
 * service's replicas combining their counters, the elastic example under the launcher, and the
 * fault-tolerant one losing a replica.
 */

import assert from "node:assert/strict";

Deno.test("examples/allreduce.ts under the launcher with 4 ranks", async () => {
  const root = new URL("../", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "launch/mod.ts", "--nproc-per-node", "4", "examples/allreduce.ts"],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  for (let r = 0; r < 4; r++) {
    assert.match(text, new RegExp(`\\[rank ${r}\\] rank ${r} of 4: allReduce gave 6 \\(expected 6\\)`));
  }
});

const ROOT = new URL("../", import.meta.url).pathname;

/** Runs a command in the repository root; resolves with its exit code and output. */
async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The centroids a k-means run printed. */
function centroidsOf(stdout: string): number[] {
  const line = stdout.split("\n").find((l) => l.includes("CENTROIDS "));
  assert.ok(line, `no CENTROIDS line in:\n${stdout}`);
  return JSON.parse(line.slice(line.indexOf("CENTROIDS ") + 10)) as number[];
}

/** Serial k-means over the whole data set: the reference both distributed runs must match. */
async function serialKMeans(): Promise<number[]> {
  const { assign, DIM, initialCentroids, K, shard } = await import("../examples/kmeans_data.ts");
  const points = shard(0, 1);
  const c = initialCentroids();
  const sums = new Float64Array(K * DIM + K + 1);
  for (let it = 0, moved = Infinity; moved > 1e-12 && it < 100; it++) {
    sums.fill(0);
    assign(points, c, sums);
    moved = 0;
    for (let k = 0; k < K; k++) {
      const n = sums[K * DIM + k];
      for (let j = 0; n > 0 && j < DIM; j++) {
        const next = sums[k * DIM + j] / n;
        moved = Math.max(moved, Math.abs(next - c[k * DIM + j]));
        c[k * DIM + j] = next;
      }
    }
  }
  return Array.from(c);
}

function assertClose(got: number[], want: number[], what: string) {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `${what}: coordinate ${i} is ${got[i]}, serial ${want[i]}`);
  }
}

Deno.test("examples/kmeans.ts: the same file on 3 Worker ranks and on 2 launcher processes matches serial k-means", async () => {
  const want = await serialKMeans();
  const workers = await run(["run", `--allow-read=${ROOT}`, "examples/kmeans_workers.ts", "3"]);
  assert.equal(workers.code, 0, workers.stderr);
  assert.match(workers.stdout, /k-means on 3 worker ranks/);
  assertClose(centroidsOf(workers.stdout), want, "Worker ranks");
  const procs = await run([
    "run",
    "--allow-all",
    "launch/mod.ts",
    "--nproc-per-node",
    "2",
    "examples/kmeans.ts",
  ]);
  assert.equal(procs.code, 0, procs.stderr);
  assert.match(procs.stdout, /k-means on 2 shm ranks/);
  assertClose(centroidsOf(procs.stdout), want, "process ranks");
});

Deno.test("examples/hono_stats.ts: 2 replicas combine their counters; /stats on either answers for both", async () => {
  const token = "hono-stats-" + crypto.randomUUID();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "launch/mod.ts",
      "--nproc-per-node",
      "2",
      "examples/hono_stats.ts",
      "--port",
      "0",
      "--interval-ms",
      "100",
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", CHOIR_TOKEN: token },
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  let text = "";
  const urls: string[] = [];
  let sawBoth: () => void = () => {};
  const both = new Promise<void>((r) => (sawBoth = r));
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      for (const m of text.matchAll(/replica (\d) listening on (http:\S+)/g)) urls[Number(m[1])] = m[2];
      if (urls[0] && urls[1]) sawBoth();
    }
  })();
  const errText = new Response(child.stderr).text();
  try {
    await Promise.race([both, child.status.then(() => Promise.reject(new Error(`exited early:\n${text}`)))]);
    for (let i = 0; i < 10; i++) assert.equal((await fetch(`${urls[0]}/`)).status, 200);
    for (let i = 0; i < 15; i++) await (await fetch(`${urls[1]}/work?n=2000`)).json();
    const missing = await fetch(`${urls[1]}/missing`);
    await missing.body?.cancel();
    assert.equal(missing.status, 404);
    // `fresh` waits for rounds that began after every request above (the test's deadline bounds it).
    type Stats = {
      requests: number;
      errors: number;
      ports: number[];
      latencyMs: { buckets: Record<string, number> };
    };
    const stats = await (await fetch(`${urls[0]}/stats?fresh=1`)).json() as Stats;
    assert.equal(stats.requests, 26, JSON.stringify(stats));
    assert.equal(stats.errors, 1);
    assert.equal(Object.values(stats.latencyMs.buckets).reduce((a, b) => a + b, 0), 26);
    assert.deepEqual(stats.ports, urls.map((u) => Number(new URL(u).port)));
    // Replica 1 serves the same service-wide numbers.
    const other = await (await fetch(`${urls[1]}/stats`)).json() as Stats;
    assert.equal(other.requests, 26);
    // Shutdown takes the job token: without it (or with another) the answer is 401 and nothing stops.
    for (const headers of [{}, { authorization: "Bearer not-the-token" }] as Record<string, string>[]) {
      const refused = await fetch(`${urls[1]}/shutdown`, { method: "POST", headers });
      await refused.body?.cancel();
      assert.equal(refused.status, 401);
    }
    const alive = await fetch(`${urls[0]}/`);
    await alive.text();
    assert.equal(alive.status, 200);
    // One shutdown request with the token stops both replicas at the next round.
    const bearer = { authorization: `Bearer ${token}` };
    await (await fetch(`${urls[1]}/shutdown`, { method: "POST", headers: bearer })).json();
    const status = await child.status;
    await reading;
    assert.equal(status.code, 0, await errText);
    assert.match(text, /replica 0 stopped/);
    assert.match(text, /replica 1 stopped/);
  } finally {
    clearTimeout(killer);
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
    await reading.catch(() => {});
    await errText.catch(() => {});
  }
});

Deno.test("examples/elastic_linear.ts under the launcher: trains, commits each step, converges", async () => {
  const out = await run([
    "run",
    "--allow-all",
    "launch/mod.ts",
    "--nproc-per-node",
    "2",
    "--max-restarts",
    "1",
    "examples/elastic_linear.ts",
    "200",
  ]);
  assert.equal(out.code, 0, out.stderr);
  const line = out.stdout.split("\n").find((l) => l.startsWith("[rank 0] RESULT "));
  assert.ok(line, out.stdout);
  const r = JSON.parse(line.slice("[rank 0] RESULT ".length)) as {
    w: number[];
    b: number;
    resumedFrom: null;
  };
  assert.equal(r.resumedFrom, null);
  [1, -2, 0.5, 3].forEach((w, k) => assert.ok(Math.abs(r.w[k] - w) < 0.01, `w[${k}] = ${r.w[k]}`));
  assert.ok(Math.abs(r.b - 0.25) < 0.01);
});

Deno.test("examples/ft_mlp.ts under launch --restart-failed: replica 1 dies, the others go on, its replacement joins", async () => {
  const out = await run([
    "run",
    "--allow-all",
    "launch/mod.ts",
    "--nproc-per-node",
    "4",
    "--restart-failed",
    "1",
    "examples/ft_mlp.ts",
    "--steps",
    "80",
    "--crash-at",
    "20",
  ]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, /rank 1 was killed by SIGKILL \(exit code 137\); restarting only it/);
  assert.match(out.stdout, /\[rank 1\] replica 1 waits to be admitted/);
  const line = out.stdout.split("\n").find((l) => l.startsWith("[rank 0] RESULT "));
  assert.ok(line, out.stdout);
  const r = JSON.parse(line.slice("[rank 0] RESULT ".length)) as {
    steps: number;
    accuracy: number;
    members: number[];
  };
  assert.equal(r.steps, 80);
  assert.ok(r.accuracy > 0.8, `accuracy ${r.accuracy}`);
});
