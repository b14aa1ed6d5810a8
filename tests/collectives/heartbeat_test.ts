/**
 * @module
 * Liveness between collectives (transports/heartbeat/): ranks that run no collective still learn, from
 * their heartbeat threads, that a rank was killed (within the half-second grace) or froze as a vanished
 * host does (SIGSTOP: no FIN, no RST; within the heartbeat timeout), over tcp and shm, whichever rank
 * it is, rank 0 serving the store included. Their group breaks with a PeerLostError naming that rank,
 * and the next call rejects with it at once.
 */

import assert from "node:assert/strict";
import { type KillTrial, killTrial, type SurvivorResult } from "../helpers/kill.ts";
import { resultOf, runRanks } from "../helpers/ranks.ts";

const script = new URL("../fixtures/idle_watch.ts", import.meta.url);

interface IdleResult extends SurvivorResult {
  /** What the next allReduce did: "same" (rejected with the group's failure at once). */
  next: string;
}

/** One job of idle ranks (idle_watch.ts) with a victim: the survivors' results. */
function idleTrial(t: Omit<KillTrial, "op" | "count" | "script" | "args">): Promise<IdleResult[]> {
  return killTrial<IdleResult>({ ...t, op: "idle", count: 0, script, args: [] });
}

function assertIdleNamed(results: readonly IdleResult[], victim: number, within: number, what: string): void {
  for (const r of results) {
    assert.equal(r.name, "PeerLostError", `${what}: ${r.message}`);
    assert.equal(r.peer, victim, `${what}: ${r.message}`);
    assert.match(r.message, new RegExp(`rank ${victim}`), what);
    assert.ok(r.ms < within, `${what}: took ${r.ms} ms`);
    assert.equal(r.next, "same", `${what}: the next call did not reject with the group's failure`);
  }
}

// The last row starts the heartbeat before the rendezvous (CHOIR_HEARTBEAT_START_MS=0), the others a
// second after the group formed (the default); idle_watch.ts waits for it either way.
for (
  const [transport, worldSize, victim, storeOnRank0, startMs] of [
    ["tcp", 4, 2, false, undefined],
    ["tcp", 3, 0, true, undefined],
    ["shm", 4, 1, true, undefined],
    ["tcp", 2, 1, true, undefined],
    ["shm", 3, 2, false, "0"],
  ] as const
) {
  const name = `idle ranks, SIGKILL of rank ${victim} of ${worldSize} (${transport}${
    storeOnRank0 ? ", store on rank 0" : ""
  }${startMs === undefined ? "" : `, heartbeat started at ${startMs} ms`})`;
  const env: Record<string, string> = startMs === undefined ? {} : { CHOIR_HEARTBEAT_START_MS: startMs };
  Deno.test(`${name}: every survivor's group breaks naming it within 3 s`, async () => {
    assertIdleNamed(await idleTrial({ transport, worldSize, victim, storeOnRank0, env }), victim, 3000, name);
  });
}

for (const [transport, worldSize, victim] of [["tcp", 4, 1], ["shm", 3, 2]] as const) {
  const name = `idle ranks, rank ${victim} of ${worldSize} frozen like a vanished host (${transport})`;
  Deno.test(`${name}: every survivor's group breaks naming it after the heartbeat timeout`, async () => {
    const results = await idleTrial({
      transport,
      worldSize,
      victim,
      signal: "SIGSTOP",
      env: { CHOIR_HEARTBEAT_TIMEOUT: "2000" },
    });
    // 2 s of silence, a tick of 1 s to notice it, the news round the ring, and a slow machine.
    assertIdleNamed(results, victim, 6000, name);
  });
}

Deno.test("a rank whose JavaScript thread is busy past the heartbeat timeout is not taken for lost (tcp, 3 ranks)", async () => {
  const outs = await runRanks({
    script: "tests/fixtures/busy_rank.ts",
    worldSize: 3,
    args: ["4000"],
    env: { CHOIR_TRANSPORT: "tcp", CHOIR_HEARTBEAT_TIMEOUT: "1500" },
    deadlineMs: 60_000,
  });
  for (const o of outs) {
    const r = resultOf<{ failure: string | null; sum: number }>(o);
    assert.equal(r.failure, null);
    assert.equal(r.sum, 3);
  }
});
