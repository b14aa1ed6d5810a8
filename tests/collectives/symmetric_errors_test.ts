/**
 * @module
 * allReduce on `pg.alloc` tensors that the ranks do not agree on is a CollectiveMismatchError on every
 * rank, naming what differed (the allocation, the byte offset, symmetric memory against an ordinary
 * array), raised before any rank writes: every array of every rank, the passed views included, still
 * holds what it was filled with. A subview at the same offset on every rank works and leaves the rest
 * of the allocation alone. Over shm processes and over Worker ranks (one shared WebAssembly memory);
 * the workers use a 4 s timeout.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";
import { spawnWorkers } from "../../transports/worker/spawn.ts";
import type { MisuseResult } from "../fixtures/symmetric_misuse_worker.ts";

const script = "tests/fixtures/symmetric_misuse_worker.ts";

/** Runs `scenario` on 2 ranks: processes over shm, or Worker ranks of this process. */
async function run(scenario: string, ranks: "shm" | "worker"): Promise<MisuseResult[]> {
  if (ranks === "shm") {
    const outs = await runRanks({
      script,
      worldSize: 2,
      args: [scenario],
      env: { CHOIR_TRANSPORT: "shm" },
      deadlineMs: 30_000,
    });
    return outs.map((o) => resultOf<MisuseResult>(o));
  }
  const group = await spawnWorkers(2, new URL(`../../${script}`, import.meta.url), {
    data: { scenario },
    timeoutMs: 30_000,
  });
  try {
    return (await group.results(30_000)) as MisuseResult[];
  } finally {
    await group.close();
  }
}

const MISMATCHES = [
  ["alloc", /allocation: expected [01], peer sent [01]/],
  ["offset", /offset: expected (0|64), peer sent (64|0)/],
  ["ordinary", /memory: expected (symmetric|ordinary array), peer sent (ordinary array|symmetric)/],
] as const;

for (const ranks of ["shm", "worker"] as const) {
  for (const [scenario, field] of MISMATCHES) {
    Deno.test(`${ranks}: pg.alloc allReduce, ${scenario} differs: CollectiveMismatchError on every rank, nothing written`, async () => {
      const res = await run(scenario, ranks);
      assert.equal(res.length, 2);
      for (const r of res) {
        const ctx = `rank ${r.rank}: ${r.name}: ${r.message} (first ${r.first})`;
        assert.equal(r.name, "CollectiveMismatchError", ctx);
        assert.match(r.message, /\[rank [01], allReduce, peer [01]\] collective mismatch/, ctx);
        assert.match(r.message, field, ctx);
        assert.ok(r.ms < 4000, `${ctx}: took ${r.ms} ms`);
        // Caught at the first step: no rank wrote into any array, its own view included.
        assert.deepEqual(r.outside, { a: true, b: true, plain: true }, ctx);
        assert.deepEqual(r.inside, { a: true, b: true, plain: true }, ctx);
      }
    });
  }

  Deno.test(`${ranks}: pg.alloc allReduce on the same subview on every rank: the sum, the rest untouched`, async () => {
    const res = await run("subview", ranks);
    assert.equal(res.length, 2);
    for (const r of res) {
      const ctx = `rank ${r.rank}: ${r.name}: ${r.message}`;
      assert.equal(r.name, "none", ctx);
      assert.equal(r.first, 3, ctx); // 1 + 2
      assert.deepEqual(r.outside, { a: true, b: true, plain: true }, ctx);
      assert.equal(r.inside.a, false, ctx); // the view holds the sum now
    }
  });
}
