/**
 * @module
 * `mpirun -np 4` (Open MPI) starting a choir program directly, no choir launcher: ranks, world size and
 * the store's address and port come from Open MPI's variables (schedulers.ts). Skipped without mpirun.
 */

import assert from "node:assert/strict";

async function hasMpirun(): Promise<boolean> {
  try {
    return (await new Deno.Command("mpirun", { args: ["--version"], stdout: "null", stderr: "null" })
      .output())
      .success;
  } catch {
    return false;
  }
}

const available = await hasMpirun();
if (!available) console.log("mpirun_test.ts: skipped: mpirun (Debian openmpi-bin) is not installed");

Deno.test({
  name: "mpirun -np 4 runs examples/allreduce.ts with no choir launcher",
  ignore: !available,
  fn: async () => {
    const root = new URL("../../", import.meta.url).pathname;
    // As root Open MPI wants --allow-run-as-root; a 2-core machine needs --oversubscribe for 4 ranks.
    const asRoot = Deno.uid() === 0 ? ["--allow-run-as-root"] : [];
    const child = new Deno.Command("mpirun", {
      args: [...asRoot, "--oversubscribe", "-np", "4", Deno.execPath(), "run", "-A", "examples/allreduce.ts"],
      cwd: root,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    const out = await child.output();
    clearTimeout(timer);
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    for (let r = 0; r < 4; r++) {
      assert.match(text, new RegExp(`^rank ${r} of 4: allReduce gave 6 \\(expected 6\\)$`, "m"));
    }
  },
});
