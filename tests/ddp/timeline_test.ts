/**
 * @module
 * Unit tests of the step timeline: spans recorded around work, the Chrome trace they become, and the
 * text drawing.
 */

import assert from "node:assert/strict";
import { Timeline } from "../../ddp/mod.ts";

Deno.test("Timeline: spans, Chrome trace events and a text drawing with one row per track", async () => {
  const t = new Timeline();
  const v = await t.span("compute", "backward", () => 42, "B");
  assert.equal(v, 42);
  const start = t.now();
  t.end("comm", "bucket 0", start, "0");
  await assert.rejects(() => t.span("compute", "fails", () => Promise.reject(new Error("x"))));
  assert.deepEqual(t.spans.map((s) => s.name), ["backward", "bucket 0", "fails"]);
  for (const s of t.spans) assert.ok(s.end >= s.start);
  const trace = t.toChromeTrace(3);
  assert.deepEqual(trace.map((e) => [e.name, e.cat, e.ph, e.pid, e.tid]), [
    ["backward", "compute", "X", 3, 0],
    ["bucket 0", "comm", "X", 3, 1],
    ["fails", "compute", "X", 3, 0],
  ]);
  const rows = t.render(40).split("\n");
  assert.equal(rows.length, 3);
  assert.match(rows[0], /^compute \|[Bf.]{40}\|$/);
  assert.match(rows[1], /^comm {4}\|[0.]{40}\|$/);
  t.clear();
  assert.equal(t.spans.length, 0);
  assert.equal(t.render(), "(no spans)");
});
