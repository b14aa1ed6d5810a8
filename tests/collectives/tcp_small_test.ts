/**
 * @module
 * The small 2-rank allreduce over TCP that completes in the caller's turn (one exchange, the
 * reply polled for straight into the link's frame buffer, or into the caller's from 32 KiB to 256 KiB):
 * values of every dtype and op around both thresholds against the independent reference, over 2 ranks
 * and (ordinary path, same
 * fixture) 4; a call that differs between the ranks is a CollectiveMismatchError naming the rank,
 * the op and the field; a peer that is killed mid-loop is a PeerLostError within seconds; a peer
 * that stops calling is a CollectiveTimeoutError at the call's timeout, not a hang.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";
import { assertNamed, killTrial } from "../helpers/kill.ts";

const SCRIPT = "tests/fixtures/tcp_small_worker.ts";
const TCP = { CHOIR_TRANSPORT: "tcp" };

interface Values {
  checks: number;
  failures: string[];
}

interface Failure {
  name: string;
  message: string;
  ms: number;
}

for (const worldSize of [2, 4]) {
  Deno.test(`tcp small allreduce: every dtype and op around 32 KiB and 256 KiB, ${worldSize} ranks`, async () => {
    const outs = await runRanks({ script: SCRIPT, worldSize, args: ["values"], env: TCP });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      const res = resultOf<Values>(out);
      assert.deepEqual(res.failures, [], `rank ${out.rank} failures`);
      assert.ok(res.checks > 300, `rank ${out.rank} ran only ${res.checks} checks`);
    }
  });
}

for (
  const [scenario, field] of [
    ["mismatch-count", /count/],
    ["mismatch-count-mid", /count/],
    ["mismatch-op", /op/],
    ["mismatch-dtype", /dtype/],
  ] as const
) {
  Deno.test(`tcp small allreduce: ${scenario} after 50 matched calls is a typed mismatch`, async () => {
    const outs = await runRanks({ script: SCRIPT, worldSize: 2, args: [scenario], env: TCP });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      const res = resultOf<Failure>(out);
      assert.equal(res.name, "CollectiveMismatchError", `rank ${out.rank}: ${res.message}`);
      assert.match(res.message, new RegExp(`rank ${out.rank}`), `rank ${out.rank} names itself`);
      assert.match(res.message, /allReduce/, `rank ${out.rank} names the op`);
      assert.match(res.message, field, `rank ${out.rank} names what differed`);
      assert.doesNotMatch(
        out.stdout,
        /UNTOUCHED false/,
        `rank ${out.rank}: the failed call wrote its buffer`,
      );
    }
  });
}

Deno.test("tcp small allreduce: a peer that stops calling times out the call (no hang)", async () => {
  const outs = await runRanks({ script: SCRIPT, worldSize: 2, args: ["stall"], env: TCP });
  const res = resultOf<Failure>(outs[0]);
  assert.equal(res.name, "CollectiveTimeoutError", res.message);
  assert.match(res.message, /allReduce/);
});

for (const [count, victim] of [[2, 1], [2, 0], [2048, 1], [16384, 0]] as const) {
  const name = `SIGKILL of rank ${victim} of 2 mid small allreduce (tcp, ${count * 4} B)`;
  Deno.test(`${name}: the survivor gets PeerLostError naming it`, async () => {
    const results = await killTrial({ op: "allReduce", transport: "tcp", count, worldSize: 2, victim });
    assertNamed(results, victim, name);
  });
}
