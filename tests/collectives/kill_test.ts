/**
 * @module
 * A rank killed with SIGKILL in the middle of allreduces: the survivors get PeerLostError naming it
 * within seconds (not the 20 s timeout), over tcp and over shared memory (tiny and chunked arena
 * paths), and nothing is left in /dev/shm. Over TCP with 3+ ranks the survivors that only see a
 * neighbour close its links learn the real cause through the store (failure_cause.ts).
 */

import assert from "node:assert/strict";
import { choirSegments, leftoverSegments } from "../helpers/shm_segments.ts";
import { assertNamed, killTrial } from "../helpers/kill.ts";

for (
  const [transport, count, worldSize, victim] of [
    ["tcp", 65536, 2, 1],
    ["tcp", 65536, 4, 2],
    ["tcp", 2, 4, 3],
    ["shm", 2, 3, 1],
    ["shm", 65536, 3, 1],
    ["shm", 2, 4, 2],
  ] as const
) {
  const name = `SIGKILL of rank ${victim} of ${worldSize} mid-allreduce (${transport}, ${count * 4} B)`;
  Deno.test(`${name}: every survivor gets PeerLostError naming it`, async () => {
    const before = choirSegments();
    const results = await killTrial({ op: "allReduce", transport, count, worldSize, victim });
    assertNamed(results, victim, name);
    assert.deepEqual(await leftoverSegments(before), [], "a /dev/shm segment was left behind");
  });
}
