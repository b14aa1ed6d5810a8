/**
 * @module
 * Property test: random world sizes (1..8), ops, dtypes, reduce ops, lengths (0, 1, primes, ~300k)
 * and roots, each case run with the plan's choice and with every applicable algorithm forced, over
 * tcp and over shared memory; every result checked on every rank against the independent reference.
 * The seed is printed; `CHOIR_PROPERTY_SEED=<seed> deno test -A tests/collectives/property_test.ts`
 * replays a failure. Each world size launches its ranks once and runs a batch of cases.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";
import { rng } from "./reference.ts";

interface WorkerResult {
  rank: number;
  checks: number;
  failures: string[];
}

const seed = Number(Deno.env.get("CHOIR_PROPERTY_SEED") ?? Math.floor(Math.random() * 2 ** 31));
console.log(`property test seed ${seed} (replay: CHOIR_PROPERTY_SEED=${seed})`);
const rand = rng(seed);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];

// One world size from each stratum, so that every run covers one or two ranks, a non-power of two
// (Rabenseifner's and recursive doubling's fold) and a power of two above 2.
// The chunk size varies too, so that pipelines run with many chunks as well as with one.
const plans: { transport: string; worldSize: number; seed: number; chunkBytes: number }[] = [];
for (const transport of ["tcp", "shm"]) {
  for (const stratum of [[1, 2], [3, 5, 6, 7], [4, 8]]) {
    const worldSize = pick(stratum);
    plans.push({
      transport,
      worldSize,
      seed: Math.floor(rand() * 2 ** 31),
      chunkBytes: pick([4096, 65536, 1 << 20]),
    });
  }
}

for (const p of plans) {
  const name =
    `property: ${p.worldSize} ranks over ${p.transport}, chunks of ${p.chunkBytes} B (seed ${p.seed})`;
  Deno.test(name, async () => {
    // Fewer cases on crowded runs: 8 ranks share our 2 cores.
    const cases = p.worldSize <= 2 ? 100 : p.worldSize <= 5 ? 60 : 40;
    const outs = await runRanks({
      script: "tests/fixtures/property_worker.ts",
      worldSize: p.worldSize,
      args: [JSON.stringify({ seed: p.seed, cases, large: 300_007, chunkBytes: p.chunkBytes })],
      env: { CHOIR_TRANSPORT: p.transport },
      deadlineMs: 240_000, // generous: other jobs may share our 2 cores
    });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      const res = resultOf<WorkerResult>(out);
      assert.deepEqual(res.failures, [], `rank ${out.rank} failures (seed ${p.seed})`);
      assert.ok(res.checks >= cases, `rank ${out.rank} ran only ${res.checks} checks`);
    }
  });
}
