/**
 * @module
 * The /dev/shm sweep: it removes exactly the names that carry the job's tag (not another job's, not
 * a job whose id is a prefix of this one's), and nothing at all for a job without an id.
 */

import assert from "node:assert/strict";
import { jobTag } from "../../transports/shm/segment.ts";
import { sweepJobSegments } from "../../transports/shm/sweep.ts";

const haveShm = (() => {
  try {
    return Deno.statSync("/dev/shm").isDirectory;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "shm sweep: removes the job's names only; an empty job id removes nothing",
  ignore: !haveShm,
  fn: async () => {
    const id = `sweep${crypto.randomUUID().slice(0, 8)}`;
    const mine = [`choir-${jobTag(id)}a-g0`, `choir-${jobTag(id)}sym-1-a0-r0`];
    const others = [`choir-${jobTag(`${id}x`)}a-g0`, `choir-${jobTag(`other${id}`)}a-g0`];
    for (const n of [...mine, ...others]) Deno.writeFileSync(`/dev/shm/${n}`, new Uint8Array(1));
    try {
      assert.equal(await sweepJobSegments(""), 0);
      assert.equal(await sweepJobSegments(id), mine.length);
      const left = new Set([...Deno.readDirSync("/dev/shm")].map((e) => e.name));
      for (const n of mine) assert.ok(!left.has(n), `${n} should be gone`);
      for (const n of others) assert.ok(left.has(n), `${n} should remain`);
      assert.equal(await sweepJobSegments(id), 0);
    } finally {
      for (const n of [...mine, ...others]) {
        try {
          Deno.removeSync(`/dev/shm/${n}`);
        } catch { /* swept */ }
      }
    }
  },
});
