/**
 * @module
 * Binding ranks to CPUs (transports/cpu_bind.ts, CHOIR_CPU_BIND, the launcher's --bind-to): real rank
 * processes started by the launcher report the CPUs they may run on after initProcessGroup; with
 * `core` each has exactly one, the LOCAL_RANK-th of the host's (round robin past their number), with
 * `none` each keeps them all. A bad value is a typed error naming the variable.
 */

import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../errors.ts";
import { launch } from "../../launch/mod.ts";
import { parseLaunchArgs } from "../../launch/args.ts";
import { allowedCpus, parseCpuBind } from "../../transports/cpu_bind.ts";

const fixture = new URL("../fixtures/cpu_bind_rank.ts", import.meta.url).pathname;
const linux = Deno.build.os === "linux";
if (!linux) console.error("cpu_bind_test: skipped, binding to CPUs is Linux-only");

interface Report {
  cpus: number[][];
  sum: number;
}

/** Launches `nproc` fixture ranks with `env` (and `bindTo`); returns rank 0's report, the exit code and output. */
async function run(
  nproc: number,
  env: Record<string, string>,
  bindTo?: "core" | "none",
): Promise<{ code: number; report?: Report; out: string }> {
  let report: Report | undefined;
  const lines: string[] = [];
  const res = await launch({
    program: fixture,
    nprocPerNode: nproc,
    env: { CHOIR_TRANSPORT: "shm", ...env },
    bindTo,
    onOutput: (rank, _stream, line) => {
      lines.push(`[${rank}] ${line}`);
      if (rank === 0 && line.startsWith("CPUS ")) report = JSON.parse(line.slice(5));
    },
    log: (m) => lines.push(`launch: ${m}`),
  });
  return { code: res.code, report, out: lines.join("\n") };
}

Deno.test("parseCpuBind and --bind-to: core and none, anything else a typed error naming the setting", () => {
  assert.equal(parseCpuBind("core", "CHOIR_CPU_BIND"), "core");
  assert.equal(parseCpuBind("none", "CHOIR_CPU_BIND"), "none");
  assert.equal(parseCpuBind(undefined, "CHOIR_CPU_BIND"), undefined);
  assert.throws(
    () => parseCpuBind("socket", "CHOIR_CPU_BIND"),
    (e: unknown) =>
      e instanceof InvalidArgumentError && /CHOIR_CPU_BIND/.test(e.message) && /socket/.test(e.message),
  );
  assert.equal(parseLaunchArgs(["--bind-to", "core", "p.ts"]).bindTo, "core");
  assert.equal(parseLaunchArgs(["--bind-to=none", "p.ts"]).bindTo, "none");
  assert.equal(parseLaunchArgs(["p.ts"]).bindTo, undefined);
  assert.throws(
    () => parseLaunchArgs(["--bind-to", "cores", "p.ts"]),
    (e: unknown) =>
      e instanceof InvalidArgumentError && /--bind-to must be "core" or "none", got "cores"/.test(e.message),
  );
});

Deno.test({
  name:
    "--bind-to core: each rank runs on exactly its LOCAL_RANK-th CPU, round robin past the CPUs; sums still right",
  ignore: !linux,
  async fn() {
    const host = allowedCpus();
    assert.ok(host.length >= 1);
    // One more rank than CPUs, so the round robin wraps (2 CPUs here: ranks 0..2 on CPUs 0, 1, 0).
    const n = Math.min(host.length + 1, 5);
    const { code, report, out } = await run(n, {}, "core");
    assert.equal(code, 0, out);
    assert.ok(report, out);
    assert.equal(report.sum, (n * (n + 1)) / 2);
    assert.deepEqual(report.cpus, Array.from({ length: n }, (_, r) => [host[r % host.length]]));
  },
});

Deno.test({
  name: "CHOIR_CPU_BIND=none, or unset: ranks keep every CPU of the host",
  ignore: !linux,
  async fn() {
    const host = allowedCpus();
    const envs: Record<string, string>[] = [{ CHOIR_CPU_BIND: "none" }, {}];
    for (const env of envs) {
      const { code, report, out } = await run(2, env);
      assert.equal(code, 0, out);
      assert.ok(report, out);
      assert.deepEqual(report.cpus, [host, host]);
    }
  },
});

Deno.test({
  name: "CHOIR_CPU_BIND with a bad value: every rank fails at init with an error naming it",
  ignore: !linux,
  async fn() {
    const { code, out } = await run(2, { CHOIR_CPU_BIND: "sockets" });
    assert.notEqual(code, 0);
    assert.match(out, /InvalidArgumentError[^\n]*CHOIR_CPU_BIND must be "core" or "none", got "sockets"/);
  },
});
