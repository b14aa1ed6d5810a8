/**
 * @module
 * README's first program, run the way README says: `deno task launch --nproc-per-node 4
 * examples/allreduce.ts` (here through the launcher's code path, with the same arguments).
 */

import assert from "node:assert/strict";

Deno.test("examples/allreduce.ts under the launcher with 4 ranks", async () => {
  const root = new URL("../", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "ddp/launch.ts", "--nproc-per-node", "4", "examples/allreduce.ts"],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  for (let r = 0; r < 4; r++) {
    assert.match(text, new RegExp(`\\[rank ${r}\\] rank ${r} of 4: allReduce gave 6 \\(expected 6\\)`));
  }
});

Deno.test("examples/elastic_linear.ts under the launcher: trains, commits each step, converges", async () => {
  const root = new URL("../", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "ddp/launch.ts",
      "--nproc-per-node",
      "2",
      "--max-restarts",
      "1",
      "examples/elastic_linear.ts",
      "200",
    ],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const line = text.split("\n").find((l) => l.startsWith("[rank 0] RESULT "));
  assert.ok(line, text);
  const r = JSON.parse(line.slice("[rank 0] RESULT ".length)) as {
    w: number[];
    b: number;
    resumedFrom: null;
  };
  assert.equal(r.resumedFrom, null);
  [1, -2, 0.5, 3].forEach((w, k) => assert.ok(Math.abs(r.w[k] - w) < 0.01, `w[${k}] = ${r.w[k]}`));
  assert.ok(Math.abs(r.b - 0.25) < 0.01);
});
