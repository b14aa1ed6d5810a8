/**
 * @module
 * Failures are typed and bounded: mismatched collectives, a peer that exits, a bad argument, a wrong
 * token, a store that is not there and a rank that never arrives all end in a named error within the
 * timeout (the workers use a 4 s timeout), on real processes over real sockets.
 */

import assert from "node:assert/strict";
import { freePort, type RankOutput, resultOf, runRanks } from "../helpers/ranks.ts";

interface ErrResult {
  name: string;
  message: string;
  ms: number;
}

const script = "tests/fixtures/error_worker.ts";
const results = (outs: RankOutput[]) => outs.map((o) => resultOf<ErrResult>(o));

/** Each mismatch scenario of error_worker.ts and the field its error must name. */
const MISMATCHES = [
  ["mismatch-count", /count: expected 1[01], peer sent 1[01]/],
  ["mismatch-op", /op: expected allReduce\/(sum|max), peer sent allReduce\/(max|sum)/],
  ["mismatch-dtype", /dtype: expected (f32|i32), peer sent (i32|f32)/],
  ["mismatch-root", /root: expected [01], peer sent [01]|op: expected (allReduce\/sum|broadcast)/],
  ["mismatch-order", /op: expected (allReduce\/sum|broadcast), peer sent (broadcast|allReduce\/sum)/],
] as const;

for (const transport of ["tcp", "shm"]) {
  const env = { CHOIR_TRANSPORT: transport };
  for (
    const [scenario, field] of MISMATCHES
  ) {
    Deno.test(`${transport}: ${scenario}: CollectiveMismatchError on both ranks, naming the field`, async () => {
      const res = results(
        await runRanks({ script, worldSize: 2, args: [scenario], env, deadlineMs: 30_000 }),
      );
      for (const r of res) {
        assert.equal(r.name, "CollectiveMismatchError", r.message);
        assert.match(r.message, field);
        assert.ok(r.ms < 4000 + 2000, `took ${r.ms} ms`);
      }
    });
  }

  for (
    const [scenario, field] of MISMATCHES
  ) {
    Deno.test({
      name:
        `${transport}: ${scenario}, 3 ranks, rank 0 the odd one and exiting on its error (it serves the store): a mismatch on every rank`,
    }, async () => {
      const res = results(
        await runRanks({ script, worldSize: 3, args: [scenario, "odd0", "exit"], env, deadlineMs: 30_000 }),
      );
      res.forEach((r, rank) => {
        assert.equal(r.name, "CollectiveMismatchError", `rank ${rank}: ${r.message}`);
        assert.match(r.message, field, `rank ${rank}`);
        assert.ok(r.ms < 4000 + 2000, `rank ${rank} took ${r.ms} ms`);
      });
    });
  }

  Deno.test(`${transport}: a peer that exits: PeerLostError naming it, well before the timeout`, async () => {
    const outs = await runRanks({ script, worldSize: 2, args: ["peer-exits"], env, deadlineMs: 30_000 });
    const r0 = resultOf<ErrResult>(outs[0]);
    assert.equal(r0.name, "PeerLostError", r0.message);
    assert.match(r0.message, /rank 1/);
    assert.ok(r0.ms < 4000, `took ${r0.ms} ms`);
  });
}

Deno.test("a root outside the group: InvalidArgumentError naming it", async () => {
  const res = results(await runRanks({ script, worldSize: 2, args: ["bad-root"], deadlineMs: 30_000 }));
  for (const r of res) {
    assert.equal(r.name, "InvalidArgumentError");
    assert.match(r.message, /root 7 is not a rank of this group \(size 2\)/);
  }
});

Deno.test("a wrong token: the stranger gets AuthError, the job a RendezvousError naming it", async () => {
  const outs = await runRanks({
    script,
    worldSize: 2,
    args: ["ok"],
    env: (rank): Record<string, string> => (rank === 1 ? { CHOIR_TOKEN: "not-the-token" } : {}),
    deadlineMs: 30_000,
  });
  const [r0, r1] = results(outs);
  assert.equal(r1.name, "AuthError", r1.message);
  assert.equal(r0.name, "RendezvousError", r0.message);
  assert.match(r0.message, /rank 1/);
  assert.ok(r0.ms < 4000 + 3000, `took ${r0.ms} ms`);
});

Deno.test("a rank that never arrives: RendezvousError naming it, within the timeout", async () => {
  const outs = await runRanks({ script, worldSize: 3, ranks: [0, 1], args: ["ok"], deadlineMs: 30_000 });
  for (const r of results(outs)) {
    assert.equal(r.name, "RendezvousError", r.message);
    assert.match(r.message, /rank 2|ranks 2/);
    assert.ok(r.ms < 4000 + 3000, `took ${r.ms} ms`);
  }
});

Deno.test("a store that is not there: a typed error within the timeout", async () => {
  const port = freePort();
  const outs = await runRanks({
    script,
    worldSize: 2,
    ranks: [1],
    args: ["ok"],
    env: { MASTER_PORT: String(port) },
    deadlineMs: 30_000,
  });
  const [r] = results(outs);
  assert.ok(
    ["StoreError", "RendezvousError", "StoreTimeoutError"].includes(r.name),
    `${r.name}: ${r.message}`,
  );
  assert.match(r.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  assert.ok(r.ms < 4000 + 3000, `took ${r.ms} ms`);
});
