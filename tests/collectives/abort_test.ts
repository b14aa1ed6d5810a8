/**
 * @module
 * `pg.abort()`: an allreduce waiting for a rank that never comes rejects with AbortedError right away
 * (not at its 20 s timeout), over tcp and over the shared arena (tiny and chunked), and later calls
 * are refused.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";

for (const [transport, bytes] of [["tcp", 8], ["shm", 8], ["shm", 1 << 20]] as const) {
  Deno.test(`abort (${transport}, ${bytes} B): the pending allreduce rejects with AbortedError at once`, async () => {
    const outs = await runRanks({
      script: "tests/fixtures/abort_worker.ts",
      worldSize: 2,
      args: [String(bytes)],
      env: { CHOIR_TRANSPORT: transport },
      deadlineMs: 30_000,
    });
    const r = resultOf<{ name: string; message: string; ms: number; later: string }>(outs[0]);
    assert.equal(r.name, "AbortedError", r.message);
    assert.match(r.message, /test abort/);
    assert.ok(r.ms < 2000, `took ${r.ms} ms`);
    assert.notEqual(r.later, "none", "a call after abort() must throw");
  });
}
