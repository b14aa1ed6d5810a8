/**
 * @module
 * deferHeartbeat (transports/heartbeat/heartbeat.ts): the world group's heartbeat thread starts only
 * after its delay, never when the group is stopped first, and tell/stop reach it once it runs.
 */

import assert from "node:assert/strict";
import { CollectiveMismatchError } from "../../errors.ts";
import { deferHeartbeat, type Heartbeat } from "../../transports/heartbeat/heartbeat.ts";
import { MemoryStore } from "../../transports/store/memory_store.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A stand-in heartbeat that records what reached it. */
function fake(log: string[]): Heartbeat {
  log.push("start");
  return {
    tell(cause) {
      log.push(`tell ${cause.message}`);
      return Promise.resolve();
    },
    stop() {
      log.push("stop");
      return Promise.resolve();
    },
  };
}

Deno.test("deferHeartbeat starts after its delay; tell and stop then reach the heartbeat", async () => {
  const log: string[] = [];
  const hb = deferHeartbeat(() => fake(log), 50);
  await hb.tell(new Error("early")); // before the start: not sent (nothing to send it with)
  assert.deepEqual(log, []);
  await sleep(150);
  assert.deepEqual(log, ["start"]);
  await hb.tell(new Error("late"));
  await hb.stop();
  assert.deepEqual(log, ["start", "tell late", "stop"]);
});

Deno.test("deferHeartbeat stopped before its delay never starts the thread", async () => {
  const log: string[] = [];
  const hb = deferHeartbeat(() => fake(log), 50);
  await hb.stop();
  await sleep(150);
  assert.deepEqual(log, []);
});

Deno.test("deferHeartbeat whose start finds no thread (no permission) stays quiet", async () => {
  const hb = deferHeartbeat(() => undefined, 10);
  await sleep(50);
  await hb.tell(new Error("x"));
  await hb.stop();
});

Deno.test("deferHeartbeat: a cause told before the threads are up reaches the other ranks through the store", async () => {
  const store = new MemoryStore();
  const heard: { rank: number; message: string }[] = [];
  const ranks = [0, 1, 2].map((rank) =>
    deferHeartbeat(() => undefined, 60_000, {
      store,
      rank,
      onNews: (err) => heard.push({ rank, message: err.message }),
    })
  );
  await ranks[0].tell(
    new CollectiveMismatchError({ op: "allReduce/sum" }, { op: "broadcast" }, { rank: 0 }),
  );
  const deadline = performance.now() + 5000;
  while (heard.filter((h) => h.rank !== 0).length < 2 && performance.now() < deadline) await sleep(10);
  for (const rank of [1, 2]) {
    const h = heard.find((x) => x.rank === rank);
    assert.ok(h, `rank ${rank} heard nothing`);
    assert.match(h.message, /collective mismatch: op: expected broadcast, peer sent allReduce\/sum/);
  }
  await Promise.all(ranks.map((r) => r.stop()));
});
