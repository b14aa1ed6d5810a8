/**
 * @module
 * Start-up time of a small job: the time from `deno run` of N local ranks (env://, rank 0 serves the
 * store, default transport) to every rank's first allReduce completing, median of `--launches` fresh
 * launches. Includes Deno's own start and module loading, which is what a user waits for.
 *
 * usage: deno run --allow-all bench/startup.ts [--nproc 2] [--launches 10]
 */

import { parseArgs } from "node:util";
import { median } from "./stats.ts";

const RANK = new URL("./startup_rank.ts", import.meta.url).pathname;

/** One launch: milliseconds until every rank has printed that its first allReduce completed. */
async function launchOnce(nproc: number, port: number): Promise<number> {
  const token = crypto.randomUUID(); // one job, one token
  const t0 = performance.now();
  const children = Array.from({ length: nproc }, (_, r) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", RANK],
      env: {
        RANK: String(r),
        LOCAL_RANK: String(r),
        WORLD_SIZE: String(nproc),
        LOCAL_WORLD_SIZE: String(nproc),
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        CHOIR_TOKEN: token,
      },
      stdout: "piped",
      stderr: "inherit",
      signal: AbortSignal.timeout(60_000),
    }).spawn());
  const done = await Promise.all(children.map(async (c) => {
    const out = await c.output();
    if (!out.success) throw new Error(`a rank failed (exit ${out.code})`);
    return Number(new TextDecoder().decode(out.stdout).trim());
  }));
  return Math.max(...done) - (performance.timeOrigin + t0);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { nproc: { type: "string", default: "2" }, launches: { type: "string", default: "10" } },
  });
  const times: number[] = [];
  for (let i = 0; i < Number(values.launches); i++) {
    times.push(await launchOnce(Number(values.nproc), 29600 + (i % 50)));
  }
  console.log(
    `start-up to first allReduce, ${values.nproc} ranks, ${times.length} launches: median ` +
      `${median(times).toFixed(0)} ms (${Math.min(...times).toFixed(0)}-${Math.max(...times).toFixed(0)})`,
  );
}
