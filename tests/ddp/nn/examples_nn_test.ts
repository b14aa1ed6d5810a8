/**
 * @module
 * The nn examples under the launcher on 2 ranks, shortened: one epoch of examples/train_mnist.ts
 * (must pass 85% test accuracy) and one epoch of examples/tfjs_ddp.ts.
 */

import assert from "node:assert/strict";

async function launch(program: string, args: string[]): Promise<string> {
  const root = new URL("../../../", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "launch/mod.ts", "--nproc-per-node", "2", program, ...args],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

Deno.test("examples/train_mnist.ts: one epoch on 2 ranks passes 85% test accuracy", async () => {
  const text = await launch("examples/train_mnist.ts", ["--epochs", "1"]);
  const m = text.match(/\[rank 0\] final: test accuracy ([\d.]+)% after 1 epochs on 2 ranks/);
  assert.ok(m, text);
  assert.ok(Number(m[1]) >= 85, text);
});

Deno.test("examples/tfjs_ddp.ts: one epoch on 2 ranks learns", async () => {
  const text = await launch("examples/tfjs_ddp.ts", ["--epochs", "1", "--batch", "128"]);
  const m = text.match(/\[rank 0\] epoch 1\/1: loss [\d.]+, test accuracy ([\d.]+)%/);
  assert.ok(m, text);
  assert.ok(Number(m[1]) >= 70, text);
});
