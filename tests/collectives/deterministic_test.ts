/**
 * @module
 * Deterministic mode (CHOIR_DETERMINISTIC=1): float32 sums whose value depends on the order of
 * summation come out bitwise identical whatever the algorithm (ring, tree, Rabenseifner, recursive
 * doubling, the shared arena), on every rank, from launch to launch and chunk size to chunk size, and
 * equal to the rank-order fold. Without it the algorithms' orders differ, and so do the bits.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";

type Results = Record<
  "allReduce" | "reduce" | "reduceScatter",
  Record<string, { hash: string; rankOrder: boolean }>
>;

const ALLREDUCE = ["ring", "tree", "rabenseifner", "recursive_doubling", "ordered", "gather_fold", "auto"];
const REDUCE = ["tree", "chain", "binomial", "ordered", "auto"];
const REDUCE_SCATTER = ["ring", "ordered", "auto"];

async function run(
  worldSize: number,
  env: Record<string, string>,
  chunkBytes?: number,
): Promise<(Results & { rank: number })[]> {
  const outs = await runRanks({
    script: "tests/fixtures/deterministic_worker.ts",
    worldSize,
    args: [
      JSON.stringify({
        len: 20_011,
        allReduce: ALLREDUCE,
        reduce: REDUCE,
        reduceScatter: REDUCE_SCATTER,
        chunkBytes,
      }),
    ],
    env,
  });
  return outs.map((out) => {
    assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
    return resultOf<Results & { rank: number }>(out);
  });
}

/** Every algorithm's result on every rank is the rank-order fold, so all hashes agree. */
function assertDeterministic(results: Results[]): string {
  const hashes = new Set<string>();
  for (const res of results) {
    for (const [alg, v] of Object.entries(res.allReduce)) {
      assert.ok(v.rankOrder, `allReduce ${alg}: not the rank-order fold`);
      hashes.add(v.hash);
    }
    for (const [alg, v] of Object.entries(res.reduce)) {
      assert.ok(v.rankOrder, `reduce ${alg}: not the rank-order fold`);
    }
    for (const [alg, v] of Object.entries(res.reduceScatter)) {
      assert.ok(v.rankOrder, `reduceScatter ${alg}: not the rank-order fold`);
    }
  }
  assert.equal(hashes.size, 1, `allReduce results differ: ${[...hashes]}`);
  return [...hashes][0];
}

Deno.test("deterministic mode over tcp, 4 ranks: every algorithm gives the rank-order bits, launch after launch", async () => {
  const det = { CHOIR_TRANSPORT: "tcp", CHOIR_DETERMINISTIC: "1" };
  const first = assertDeterministic(await run(4, det));
  const again = assertDeterministic(await run(4, { ...det, CHOIR_ALGO: "tree" }, 4096));
  assert.equal(again, first, "a second launch (4 KiB chunks, group forcing tree) gave other bits");
});

Deno.test("deterministic mode over shm, 3 ranks: the arena and the forced channel algorithms agree bitwise", async () => {
  assertDeterministic(await run(3, { CHOIR_TRANSPORT: "shm", CHOIR_DETERMINISTIC: "1" }));
});

Deno.test("without deterministic mode the summation order shows: algorithms disagree in the last bits", async () => {
  const results = await run(4, { CHOIR_TRANSPORT: "tcp" });
  // Each algorithm still gives every rank the same bits (each element is reduced once)...
  for (const alg of ALLREDUCE) {
    assert.equal(new Set(results.map((r) => r.allReduce[alg].hash)).size, 1, `${alg} differs between ranks`);
  }
  // ...but not the same bits as another algorithm: the inputs make the order matter.
  const distinct = new Set(ALLREDUCE.map((alg) => results[0].allReduce[alg].hash));
  assert.ok(distinct.size > 1, "every algorithm summed in the same order: the inputs do not test anything");
});
