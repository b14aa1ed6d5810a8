/**
 * @module
 * The sbatch scripts of examples/slurm/ on a running SLURM cluster (one node is enough:
 * `tests/helpers/slurm_local.sh start` makes one as root): srun tasks find their ranks with no launcher,
 * and the elastic launcher runs once per node. Skipped with the reason printed when no cluster answers.
 */

import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url).pathname;

async function clusterUp(): Promise<string | null> {
  try {
    const out = await new Deno.Command("sinfo", {
      args: ["-h", "-o", "%t"],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const states = new TextDecoder().decode(out.stdout);
    if (!out.success) return `sinfo failed: ${new TextDecoder().decode(out.stderr).trim()}`;
    return /idle|mix/.test(states) ? null : `no idle SLURM node (${states.trim() || "none"})`;
  } catch {
    return "sinfo (SLURM) is not installed";
  }
}

const why = await clusterUp();
if (why) console.log(`slurm_test.ts: skipped: ${why}`);

/** Submits `script` with `--wait` and returns its output file's text. */
async function sbatch(script: string, opts: string[]): Promise<string> {
  const out = await Deno.makeTempFile({ suffix: ".out" });
  try {
    const child = new Deno.Command("sbatch", {
      args: ["--wait", "-o", out, ...opts, script],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    const res = await child.output();
    clearTimeout(timer);
    const text = await Deno.readTextFile(out);
    assert.equal(res.code, 0, `${new TextDecoder().decode(res.stderr)}\n${text}`);
    return text;
  } finally {
    await Deno.remove(out);
  }
}

Deno.test({
  name: "examples/slurm/train.sbatch: 4 srun tasks train examples/ddp_linear.ts with no launcher",
  ignore: why !== null,
  fn: async () => {
    const text = await sbatch("examples/slurm/train.sbatch", ["--nodes=1", "--ntasks-per-node=4"]);
    const lines = text.split("\n").filter((l) => /^rank \d: loss/.test(l));
    assert.equal(lines.length, 4, text);
    const weights = new Set(lines.map((l) => l.replace(/^rank \d: loss [\d.]+, /, "")));
    assert.equal(weights.size, 1, text); // every rank ends with the same parameters
  },
});

Deno.test({
  name: "examples/slurm/elastic.sbatch: the elastic launcher under srun",
  ignore: why !== null,
  fn: async () => {
    const text = await sbatch("examples/slurm/elastic.sbatch", ["--nodes=1"]);
    assert.match(text, /^\[rank 0\] RESULT \{"w":\[/m);
  },
});
