/**
 * @module
 * `deno task bench --scale 256` end to end, as the lead runs it: 256 simulated ranks in 4 processes start
 * through the real store and connection logic (lazy links above 16 ranks) and run their first allReduce
 * within a minute; the table, the JSON row and the plot come out; the store load stays O(1) per rank and
 * the links O(neighbours) per rank. Also the store-only load script on its own, at 64 ranks.
 */

import assert from "node:assert/strict";
import type { ScaleRow } from "../../bench/scale/harness.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

async function run(args: string[], deadlineMs: number) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(deadlineMs),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("bench --scale 256: a 256-rank simulated start-up completes within a minute, O(1) store requests per rank", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "choir-scale-" });
  try {
    const t0 = performance.now();
    const r = await run(
      ["bench/main.ts", "--scale", "256", "--out", `${dir}/scale.jsonl`, "--plot", `${dir}/scale.svg`],
      60_000,
    );
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.ok(performance.now() - t0 < 60_000);
    assert.match(r.stdout, /first_op_ms/);
    const row = JSON.parse(Deno.readTextFileSync(`${dir}/scale.jsonl`).trim()) as ScaleRow;
    assert.equal(row.n, 256);
    assert.equal(row.connect, "auto");
    for (const p of ["store", "joined", "transport", "connected", "first_op"]) {
      assert.ok(row.phasesMs[p] > 0, `phase ${p}: ${row.phasesMs[p]}`);
    }
    // A few requests per rank (join, host ids, address, lookups, watches), not O(N).
    assert.ok(row.requests / row.n < 40, `${row.requests} store requests for 256 ranks`);
    // Lazy links: the first allReduce's tree neighbours (255 links for 256 ranks), not 255 per rank,
    // nor recursive doubling's 8 per rank (1,024 in all).
    assert.ok(row.links >= 255 && row.links < 2 * 256, `${row.links} links`);
    assert.match(Deno.readTextFileSync(`${dir}/scale.svg`), /^<svg[\s\S]*first_op[\s\S]*<\/svg>\n$/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("bench/scale/store_load.ts: the store-only start-up load at 64 ranks, both variants", async () => {
  for (const variant of ["neighbours", "mesh"]) {
    const r = await run(["bench/scale/store_load.ts", "--n", "64", "--variant", variant], 60_000);
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split("\n").find((l) => /^\S.*\s64\s/.test(l) && l.includes(variant));
    assert.ok(line, r.stdout);
  }
});
