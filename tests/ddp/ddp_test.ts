/**
 * @module
 * Tests of DistributedDataParallel with real rank processes (tests/fixtures/ddp_worker.ts): the same
 * parameters as one process on the whole batch for 1-4 ranks (several buckets, rebuilt buckets, bucket
 * views, over shm and tcp), noSync accumulation, join with uneven data, unused parameters, and the
 * communication hooks' bytes and convergence.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";

const TOL = 1e-5;

interface Out {
  rank: number;
  maxDiff: number;
  params: number[];
  [k: string]: unknown;
}

async function run(
  n: number,
  cfg: Record<string, unknown>,
  env: Record<string, string> = {},
): Promise<Out[]> {
  const outs = await runRanks({
    script: "tests/fixtures/ddp_worker.ts",
    worldSize: n,
    args: [JSON.stringify(cfg)],
    env,
    deadlineMs: 60_000,
  });
  for (const o of outs) assert.equal(o.code, 0, `rank ${o.rank} failed:\n${o.stdout}\n${o.stderr}`);
  return outs.map((o) => resultOf<Out>(o));
}

/** Every rank holds the same parameters, within TOL of the reference. */
function checkEquivalent(outs: Out[]): void {
  for (const o of outs) {
    assert.ok(o.maxDiff < TOL, `rank ${o.rank}: max difference to the reference ${o.maxDiff}`);
    assert.deepEqual(o.params, outs[0].params, `rank ${o.rank} diverged from rank 0`);
  }
}

for (const n of [1, 2, 3, 4]) {
  Deno.test(`DDP on ${n} rank(s) = one process on the whole batch (several buckets, rebuilt from ready order)`, async () => {
    const outs = await run(n, {
      mode: "equiv",
      capBytes: 150,
      hookOrder: ["b1", "b2", "w1", "w2"],
      steps: 6,
      buffers: true,
    });
    checkEquivalent(outs);
    // beforeForward copies rank 0's buffer (5 forwards of +1), then this rank's forward adds 1 + rank.
    for (const o of outs) assert.equal(o.count, 5 + 1 + o.rank);
    for (const o of outs) assert.equal(o.issuedInBackward, 6); // communication started inside backward
    assert.deepEqual(outs[0].bucketsBefore, [["b2", "w2"], ["b1"], ["w1"]]);
    assert.deepEqual(outs[0].bucketsAfter, [["b1", "b2"], ["w1"], ["w2"]]);
    // On one host over shared memory the buckets live in pg.alloc memory (allreduce in place).
    for (const o of outs) assert.equal(o.shared, n > 1);
  });
}

Deno.test("DDP over tcp with gradient buckets as views of contiguous gradients", async () => {
  checkEquivalent(await run(2, { mode: "equiv", capBytes: 300, view: true }, { CHOIR_TRANSPORT: "tcp" }));
});

Deno.test("DDP noSync: k micro-steps then one synchronized step = one big-batch step; no traffic inside", async () => {
  const outs = await run(3, { mode: "nosync", micro: 3, capBytes: 300 });
  checkEquivalent(outs);
  for (const o of outs) assert.equal(o.commInsideNoSync, 0);
});

Deno.test("DDP join: uneven batches (one rank with none) do not hang; sums divided by the world size, as torch's", async () => {
  const outs = await run(3, { mode: "join", steps: 5, capBytes: 300, buffers: true });
  checkEquivalent(outs);
  for (const o of outs) assert.equal(o.count, 5); // rank 0's buffer: it trained longest
  checkEquivalent(await run(3, { mode: "join", steps: 2, capBytes: 300 })); // rank 2 has no batch at all
});

Deno.test("DDP join with divideByInitialWorldSize false: averages over the ranks still training", async () => {
  checkEquivalent(await run(3, { mode: "join", steps: 4, capBytes: 300, activeAverage: true }));
});

Deno.test("DDP join with PowerSGD and findUnusedParameters over tcp: no hang, every rank ends equal", async () => {
  const outs = await run(3, { mode: "join", steps: 4, capBytes: 300, powersgd: true }, {
    CHOIR_TRANSPORT: "tcp",
  });
  for (const o of outs) {
    assert.deepEqual(o.params, outs[0].params);
    assert.equal(o.steps, 4);
  }
});

Deno.test("DDP findUnusedParameters and staticGraph: a parameter unused on one rank, one unused everywhere", async () => {
  const outs = await run(2, { mode: "unused", capBytes: 300 });
  checkEquivalent(outs);
  for (const o of outs) assert.deepEqual(o.unused, [["never"], ["never"], ["never"], ["never"]]);
  checkEquivalent(await run(2, { mode: "unused", capBytes: 300, staticGraph: true }));
});

Deno.test("DDP with f16 and bf16 parameters: one bucket per type, averaged in that type", async () => {
  for (const o of await run(3, { mode: "half" })) {
    assert.deepEqual(o.buckets, [["c"], ["b"], ["a"]]);
    assert.deepEqual(o.grads, [2, 2, 2]);
  }
});

Deno.test("DDP construction: parameters that differ between ranks are refused on every rank", async () => {
  for (const o of await run(2, { mode: "mismatch" })) {
    assert.match(
      String(o.error),
      /InvalidArgumentError: .*model differs between ranks 0 and 1 .*w1 60 .*w1 66/,
    );
  }
});

Deno.test("DDP hooks: fp16/bf16 halve the bytes, PowerSGD cuts them by the rank factor, all converge", async () => {
  const [o] = await run(2, { mode: "hooks", steps: 30 });
  const runs = o.runs as Record<string, { bytesPerStep: number; first: number; last: number }>;
  const plain = runs.allreduce.bytesPerStep;
  assert.equal(plain, 4 * (16 * 32 + 32 + 4 * 32 + 4));
  assert.equal(runs.custom.bytesPerStep, plain);
  assert.equal(runs.fp16.bytesPerStep, plain / 2);
  assert.equal(runs.bf16.bytesPerStep, plain / 2);
  // rank 2: w1 (32 x 16) travels as P (32 x 2) and Q (16 x 2); the vectors and w2 (4 x 32, too small) unchanged.
  assert.equal(runs.powersgd.bytesPerStep, 4 * (2 * (32 + 16) + 32 + 4 * 32 + 4));
  assert.equal(runs["fp16+powersgd"].bytesPerStep, runs.powersgd.bytesPerStep / 2);
  for (const [name, r] of Object.entries(runs)) {
    assert.ok(r.last < r.first / 5, `${name}: loss ${r.first} -> ${r.last}`);
    assert.ok(r.last < runs.allreduce.last * 1.2, `${name}: final loss ${r.last} vs ${runs.allreduce.last}`);
  }
});

Deno.test("examples/ddp_linear.ts under the launcher with 2 ranks: same weights, close to the true ones", async () => {
  const root = new URL("../../", import.meta.url);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "launch/mod.ts", "--nproc-per-node", "2", "examples/ddp_linear.ts"],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const out = await child.output().finally(() => clearTimeout(timer));
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n").sort();
  assert.equal(lines.length, 2);
  const weights = lines.map((l) => l.replace(/^\[rank \d\] rank \d: loss [\d.]+, /, ""));
  assert.equal(weights[0], weights[1]);
  assert.match(weights[0], /^w = \[0\.9\d, -1\.9\d, 0\.4\d, 2\.9\d\], b = 0\.2\d$/);
});

Deno.test("DDP with Sequential.backwardAsync = backward = one process on the whole batch; buckets on the timeline; gradients as bucket views", async () => {
  const outs: Record<string, Out[]> = {};
  for (const mode of ["sync", "async", "view", "view-tcp"]) {
    const ranks = await runRanks({
      script: "tests/fixtures/ddp_nn_worker.ts",
      worldSize: 2,
      args: [mode.replace("-tcp", "")],
      env: mode.endsWith("-tcp") ? { CHOIR_TRANSPORT: "tcp" } : {},
      deadlineMs: 60_000,
    });
    for (const o of ranks) {
      assert.equal(o.code, 0, `${mode} rank ${o.rank} failed:\n${o.stdout}\n${o.stderr}`);
    }
    outs[mode] = ranks.map((o) => resultOf<Out>(o));
    checkEquivalent(outs[mode]);
  }
  // The same reductions in the same order: bit-identical whether backward leaves the event loop free.
  assert.deepEqual(outs.async[0].params, outs.sync[0].params);
  // Gradients moved into the (shared-memory) buckets: the same parameters, no copies.
  assert.deepEqual(outs.view[0].params, outs.sync[0].params);
  for (const o of outs.view) {
    assert.ok(o.gradsInBuckets && o.shared, `rank ${o.rank}: gradients not in shared buckets`);
  }
  for (const o of outs.sync) {
    assert.ok(!o.gradsInBuckets, `rank ${o.rank}: gradients moved without the option`);
  }
  // Over tcp the buckets are ordinary arrays; the gradients still live in them.
  assert.deepEqual(outs["view-tcp"][0].params, outs.sync[0].params);
  for (const o of outs["view-tcp"]) assert.equal(o.shared, false);
  for (const o of outs.async) {
    const spans = o.spans as { track: string; name: string }[];
    const buckets = o.buckets as number;
    assert.ok(buckets >= 3, `expected several buckets, got ${buckets}`);
    assert.equal(spans.filter((s) => s.track === "comm").length, 3 * buckets); // 3 steps
  }
});
