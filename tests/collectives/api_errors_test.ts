/**
 * @module
 * Failures of the new operations are typed and bounded (workers use a 4 s timeout), over tcp and
 * shm: mismatched collectives name the field that differs, bad arguments name the rank and op, a
 * rank that never joins gives a timeout, a peer that exits fails an async Work with PeerLostError.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";

interface ErrResult {
  name: string;
  message: string;
  ms: number;
  work: { completed: boolean; success: boolean; exception: string | null } | null;
}

const script = "tests/fixtures/api_error_worker.ts";
/** Runs a 2-rank scenario; the result of each rank that printed one (a rank that exits prints none). */
const run = async (scenario: string, transport: string) => {
  const outs = await runRanks({
    script,
    worldSize: 2,
    args: [scenario],
    env: { CHOIR_TRANSPORT: transport },
    deadlineMs: 30_000,
  });
  return outs.filter((o) => o.stdout.includes("RESULT ")).map((o) => resultOf<ErrResult>(o));
};

for (const transport of ["tcp", "shm"]) {
  Deno.test(`${transport}: allToAll against allGatherList: CollectiveMismatchError on both ranks`, async () => {
    for (const r of await run("mismatch-op", transport)) {
      assert.equal(r.name, "CollectiveMismatchError", r.message);
      assert.match(r.message, /op: expected (allToAll, peer sent allGather|allGather, peer sent allToAll)/);
      assert.ok(r.ms < 4000, `took ${r.ms} ms`);
    }
  });

  Deno.test(`${transport}: gather with unequal inputs: the root names the count`, async () => {
    const [r0, r1] = await run("mismatch-gather-count", transport);
    assert.equal(r0.name, "CollectiveMismatchError", r0.message);
    assert.match(r0.message, /\[rank 0, gather, peer 1\].*count: expected 3, peer sent 4/);
    // The sender finished its part; it learns of the failure at its next collective.
    assert.ok(["CollectiveMismatchError", "PeerLostError"].includes(r1.name), `${r1.name}: ${r1.message}`);
  });

  Deno.test(`${transport}: allToAll splits that disagree: the receiver names the bytes`, async () => {
    const [, r1] = await run("mismatch-splits", transport);
    assert.equal(r1.name, "CollectiveMismatchError", r1.message);
    assert.match(r1.message, /allToAll.*bytes: expected 8, peer sent 12/);
  });

  Deno.test(`${transport}: allGatherObject against broadcastObject: CollectiveMismatchError`, async () => {
    const [r0] = await run("mismatch-object", transport);
    assert.equal(r0.name, "CollectiveMismatchError", r0.message);
    assert.match(r0.message, /op: expected allGatherObject, peer sent broadcastObject/);
  });

  Deno.test(`${transport}: a peer exits during an async allToAll: the Work fails with PeerLostError`, async () => {
    const [r0] = await run("peer-exits-work", transport);
    assert.equal(r0.name, "PeerLostError", r0.message);
    assert.match(r0.message, /rank 1/);
    assert.deepEqual(r0.work, { completed: true, success: false, exception: "PeerLostError" });
    assert.ok(r0.ms < 4000, `took ${r0.ms} ms`);
  });
}

Deno.test("gather with a wrong output length: InvalidArgumentError naming rank, op and sizes", async () => {
  const [r0] = await run("gather-bad-output", "tcp");
  assert.equal(r0.name, "InvalidArgumentError");
  assert.match(r0.message, /\[rank 0, gather\] output has 5 f32 elements, expected 8 \(2 ranks x 4\)/);
});

Deno.test("scatter with a root outside the group: InvalidArgumentError on every rank", async () => {
  for (const r of await run("scatter-bad-root", "tcp")) {
    assert.equal(r.name, "InvalidArgumentError");
    assert.match(r.message, /scatter\] root 2 is not a rank of this group \(size 2\)/);
  }
});

Deno.test("a gather a rank never joins: CollectiveTimeoutError within the timeout", async () => {
  const [r0] = await run("gather-timeout", "tcp");
  assert.equal(r0.name, "CollectiveTimeoutError", r0.message);
  // Its own timeout, or rank 1's (its recv times out too), told in-band when that one came first.
  assert.match(r0.message, /gather #0 did not complete|timed out on rank 1/);
  assert.ok(r0.ms >= 4000 && r0.ms < 4000 + 3000, `took ${r0.ms} ms`);
});
