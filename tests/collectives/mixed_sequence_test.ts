/**
 * @module
 * A seeded, randomized mixed sequence on every transport: 3 ranks run about 30 steps drawn from one
 * seed (collectives of every kind over random dtypes, ops, sizes and roots, isend/irecv pairs, object
 * collectives, newGroup and split subgroups, nested ones too, used then destroyed), each value checked
 * against the independent reference. Over tcp, shm, Worker ranks, and UCX with UCX_TLS=tcp and
 * UCX's default, the last two skipped (reason printed) where libucp does not load. The seed is new
 * each run and printed; set CHOIR_TEST_SEED to replay one.
 */

import assert from "node:assert/strict";
import { type RankOutput, resultOf, runRanks } from "../helpers/ranks.ts";
import { spawnWorkers } from "../../transports/worker/spawn.ts";
import { ucxAvailability } from "../../transports/ucx/lib.ts";

interface MixedResult {
  rank: number;
  checks: number;
  steps: number;
  ms: number;
  failures: string[];
  log: string[];
}

const RANKS = 3;
const STEPS = 30;
/** Each op's and each group's timeout inside the ranks: a hang shows as a named step, not a kill. */
const OP_TIMEOUT_MS = 15_000;
/** The whole run of one transport (ranks are killed past it). */
const DEADLINE_MS = 45_000;

function seedOf(): number {
  const given = Deno.env.get("CHOIR_TEST_SEED");
  if (given === undefined || given === "") return crypto.getRandomValues(new Uint32Array(1))[0];
  const s = Number(given);
  if (!Number.isSafeInteger(s) || s < 0) {
    throw new Error(`CHOIR_TEST_SEED must be a non-negative integer, got "${given}"`);
  }
  return s;
}

const SEED = seedOf();
console.log(`mixed sequence: seed ${SEED} (replay with CHOIR_TEST_SEED=${SEED})`);
const config = { seed: SEED, steps: STEPS, timeoutMs: OP_TIMEOUT_MS };

const avail = ucxAvailability();
if (!avail.ok) console.log(`mixed sequence over ucx: skipped, ${avail.reason}`);

/** Asserts that every rank finished the whole sequence with no failure; names the seed otherwise. */
function assertClean(where: string, results: MixedResult[], outs: RankOutput[] = []) {
  const failures = results.flatMap((r) => r.failures);
  const log = results.flatMap((r) => r.log.map((l) => `  rank ${r.rank} ${l}`));
  assert.deepEqual(
    failures,
    [],
    `${where}, seed ${SEED} (CHOIR_TEST_SEED=${SEED}):\n${failures.join("\n")}\nlast steps:\n${
      log.join("\n")
    }`,
  );
  for (const res of results) {
    assert.ok(res.checks >= STEPS / 3, `${where}, seed ${SEED}: rank ${res.rank} checked only ${res.checks}`);
  }
  for (const out of outs) {
    assert.equal(out.code, 0, `${where}, seed ${SEED}: rank ${out.rank} exited ${out.code}`);
  }
  const slowest = Math.max(...results.map((r) => r.ms));
  console.log(
    `  ${where}: ${STEPS} steps, ${results.reduce((a, r) => a + r.checks, 0)} checks, ${slowest} ms`,
  );
}

/** Runs the sequence in 3 rank processes with `env`, and checks what they report. */
async function inProcesses(where: string, env: Record<string, string>) {
  const outs = await runRanks({
    script: "tests/fixtures/mixed_sequence_worker.ts",
    worldSize: RANKS,
    args: [JSON.stringify(config)],
    env,
    deadlineMs: DEADLINE_MS,
  });
  const results = outs.map((out) => {
    try {
      return resultOf<MixedResult>(out);
    } catch {
      const tail = out.stderr.split("\n").slice(-15).join("\n");
      return {
        rank: out.rank,
        checks: 0,
        steps: STEPS,
        ms: 0,
        failures: [`rank ${out.rank} printed no result (exit ${out.code}):\n${tail}`],
        log: [],
      };
    }
  });
  assertClean(where, results, outs);
}

Deno.test(`mixed sequence over tcp, ${RANKS} ranks`, async () => {
  await inProcesses("tcp", { CHOIR_TRANSPORT: "tcp" });
});

Deno.test(`mixed sequence over shm, ${RANKS} ranks`, async () => {
  await inProcesses("shm", { CHOIR_TRANSPORT: "shm" });
});

Deno.test(`mixed sequence over Worker ranks, ${RANKS} ranks`, async () => {
  const group = await spawnWorkers(RANKS, new URL("../fixtures/mixed_sequence_worker.ts", import.meta.url), {
    data: config,
    timeoutMs: OP_TIMEOUT_MS,
  });
  try {
    assertClean("worker", (await group.results(DEADLINE_MS)) as MixedResult[]);
  } finally {
    await group.close();
  }
});

// UCX_TLS=all is UCX's own default, spelled out so that a UCX_TLS in the test's environment does not leak in.
for (const tls of ["tcp", "all"]) {
  Deno.test(
    `mixed sequence over ucx (UCX_TLS=${tls}${tls === "all" ? ", UCX's default" : ""}), ${RANKS} ranks`,
    { ignore: !avail.ok },
    async () => {
      await inProcesses(`ucx UCX_TLS=${tls}`, { CHOIR_TRANSPORT: "ucx", UCX_TLS: tls });
    },
  );
}
