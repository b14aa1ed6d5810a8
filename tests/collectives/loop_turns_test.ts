/**
 * LoopTurns: a run of calls that complete at once still lets this thread's timers run, about every
 * TURN_MS, and hands back no turn more often.
 */

import assert from "node:assert/strict";
import { LoopTurns, TURN_MS } from "../../collectives/loop_turns.ts";

/** Calls `next()` as a tight loop of calls would, for `ms`; awaits each turn it hands back. */
async function spin(turns: LoopTurns, ms: number): Promise<number> {
  let handed = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const p = turns.next();
    if (p) {
      handed++;
      await p;
    }
  }
  return handed;
}

Deno.test("LoopTurns hands back a macrotask in which a due timer fires", async () => {
  const turns = new LoopTurns();
  let fired = false;
  const timer = setTimeout(() => fired = true, 0);
  try {
    await spin(turns, TURN_MS * 2.5);
    assert.ok(fired, "a timer due before the run fired during it");
  } finally {
    clearTimeout(timer);
  }
});

Deno.test("LoopTurns turns about once per TURN_MS, not on every call", async () => {
  const turns = new LoopTurns();
  const ms = TURN_MS * 3;
  const handed = await spin(turns, ms);
  assert.ok(handed >= 1, `at least one turn in ${ms} ms`);
  assert.ok(handed <= 4, `${handed} turns in ${ms} ms (one per ${TURN_MS} ms expected)`);
});
