/**
 * @module
 * `pg.explain()` in real groups: every rank gets the same answer; over tcp it names channel
 * algorithms, on one host over shm the shared-arena ones (unless an algorithm is forced, by call or by
 * CHOIR_ALGO, which then runs over the channels); a forced algorithm that cannot run is an
 * InvalidArgumentError naming op and algorithm, and the group keeps working after it.
 */

import assert from "node:assert/strict";
import type { Explanation } from "../../mod.ts";
import { resultOf, runRanks } from "../helpers/ranks.ts";

interface Result {
  rank: number;
  explain: Record<string, Explanation | string>;
  refusals: Record<string, string>;
  sumOk: boolean;
  broadcastOk: boolean;
}

async function run(worldSize: number, env: Record<string, string>): Promise<Result[]> {
  const outs = await runRanks({ script: "tests/fixtures/explain_worker.ts", worldSize, env });
  return outs.map((out) => {
    assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
    return resultOf<Result>(out);
  });
}

function common(
  results: Result[],
): { explain: Record<string, Explanation>; refusals: Record<string, string> } {
  for (const r of results) {
    assert.deepEqual(r.explain, results[0].explain, `rank ${r.rank} explains differently from rank 0`);
    assert.ok(r.sumOk && r.broadcastOk, `rank ${r.rank}: the group did not keep working`);
    assert.match(r.refusals.allReduceChain, /allReduce.*chain|chain.*allReduce/);
    assert.match(r.refusals.broadcastRing, /broadcast.*ring|ring.*broadcast/);
    assert.match(r.refusals.explainBogus, /bogus/);
  }
  const e: Record<string, Explanation> = {};
  for (const [k, v] of Object.entries(results[0].explain)) {
    assert.ok(typeof v !== "string", `explain ${k} threw: ${v}`);
    e[k] = v;
  }
  assert.equal(e["allReduce/1048576/tree"].algorithm, "tree");
  assert.ok(["ring", "shm_small"].includes(e["allGather/8"].algorithm), e["allGather/8"].algorithm);
  return { explain: e, refusals: results[0].refusals };
}

Deno.test("explain over tcp, 2 ranks: channel algorithms, the same on every rank", async () => {
  const { explain: e, refusals } = common(await run(2, { CHOIR_TRANSPORT: "tcp" }));
  assert.equal(e["allReduce/8"].algorithm, "direct");
  assert.equal(e["allReduce/67108864"].algorithm, "ring");
  assert.equal(e["barrier/8"].algorithm, "dissemination");
  assert.equal(e["allGather/8"].algorithm, "ring");
  assert.ok(e["allReduce/67108864"].candidates.length >= 4);
  assert.equal(refusals.groupForced, "no error");
});

Deno.test("explain over shm, 2 ranks: the arena's algorithms, and the channels once forced", async () => {
  const { explain: e } = common(await run(2, { CHOIR_TRANSPORT: "shm" }));
  assert.equal(e["allReduce/8"].algorithm, "shm_small");
  assert.equal(e["allReduce/1048576"].algorithm, "shm_chunks");
  assert.equal(e["allReduce/1048576/symmetric"].algorithm, "shm_symmetric");
  assert.equal(e["barrier/8"].algorithm, "shm_small");
  assert.equal(e["broadcast/67108864"].algorithm, "shm_chunks");
  assert.equal(e["broadcast/8"].algorithm, "shm_small");
  assert.equal(e["allGather/8"].algorithm, "shm_small");
  assert.equal(e["reduceScatter/1048576"]?.algorithm ?? "shm_chunks", "shm_chunks");
  assert.match(e["allReduce/8"].reason, /arena/);

  // CHOIR_ALGO=ring: allReduce leaves the arena for the channels; broadcast has no ring, keeps its plan.
  const { explain: f } = common(await run(2, { CHOIR_TRANSPORT: "shm", CHOIR_ALGO: "ring" }));
  assert.equal(f["allReduce/8"].algorithm, "ring");
  assert.equal(f["broadcast/67108864"].algorithm, "shm_chunks");
});

Deno.test("CHOIR_ALGO=direct on 3 ranks: allReduce refuses, naming op and algorithm; other ops run", async () => {
  for (const r of await run(3, { CHOIR_TRANSPORT: "tcp", CHOIR_ALGO: "direct" })) {
    assert.match(String(r.explain["allReduce/8"]), /InvalidArgumentError.*allReduce.*direct/);
    assert.match(r.refusals.groupForced, /allReduce/);
    assert.match(r.refusals.groupForced, /direct/);
    assert.ok(r.broadcastOk);
  }
});

Deno.test("a lazy tcp group (6 ranks): barrier on the tree, small allReduce on ring or tree neighbours, only their links, and the barrier waits for the last", async () => {
  const n = 6;
  const dir = Deno.makeTempDirSync({ prefix: "choir-lazy-" });
  try {
    const outs = await runRanks({
      script: "tests/fixtures/lazy_plan_worker.ts",
      worldSize: n,
      args: [dir],
      env: { CHOIR_TRANSPORT: "tcp", CHOIR_CONNECT: "lazy" },
      deadlineMs: 60_000,
    });
    let links = 0;
    let allReduce = "";
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      const r = resultOf<
        { rank: number; explained: Record<string, string>; sawLast: boolean; sumOk: boolean; links: number }
      >(out);
      assert.equal(r.explained.barrier, "tree", `rank ${r.rank}`);
      assert.ok(["ring", "tree"].includes(r.explained.allReduce), `rank ${r.rank}: ${r.explained.allReduce}`);
      allReduce = r.explained.allReduce;
      assert.ok(r.sawLast, `rank ${r.rank} left the barrier before the last rank entered it`);
      assert.ok(r.sumOk, `rank ${r.rank}: wrong allReduce`);
      links += r.links;
    }
    // Exactly the links of the binary tree (parent (r-1)/2), and of the ring when the allReduce ran on it.
    const edges = new Set<string>();
    const edge = (a: number, b: number) => edges.add(a < b ? `${a}-${b}` : `${b}-${a}`);
    for (let r = 1; r < n; r++) edge(r, (r - 1) >> 1);
    if (allReduce === "ring") { for (let r = 0; r < n; r++) edge(r, (r + 1) % n); }
    assert.equal(links / 2, edges.size, `links ${links / 2}, expected ${[...edges].join(" ")}`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
