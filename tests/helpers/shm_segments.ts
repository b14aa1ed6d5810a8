/**
 * @module
 * Test helper: which choir /dev/shm segments a test left behind. Other jobs on the machine create
 * and remove segments at the same time, so a new name counts only if it is still there after a grace
 * period in which a live job would have removed it.
 */

/** The names of choir's segments in /dev/shm now. */
export function choirSegments(): string[] {
  return [...Deno.readDirSync("/dev/shm")].map((e) => e.name).filter((n) => n.startsWith("choir"));
}

/** Segments not in `before` that are still present after `graceMs` (polled, returns early when none). */
export async function leftoverSegments(before: readonly string[], graceMs = 5000): Promise<string[]> {
  const deadline = performance.now() + graceMs;
  for (;;) {
    const extra = choirSegments().filter((n) => !before.includes(n));
    if (extra.length === 0 || performance.now() >= deadline) return extra;
    await new Promise((r) => setTimeout(r, 100));
  }
}
