/**
 * @module
 * SIGKILL of a random rank of 4 during every collective, over tcp (links made up front, and made on first
 * use), shm and ucx (UCX_TLS=tcp, where libucp loads): every survivor gets
 * PeerLostError naming the killed rank within 3 s, and no process hangs; first with the store outside
 * the ranks (as the launcher runs it), then with rank 0 serving it (plain env://, the store dies with
 * rank 0) and every rank's program exiting on its error, rank 0 among the victims.
 * `CHOIR_KILL_TRIALS` sets the trials per op and transport (default 1 in CI; the matrix is 20);
 * `CHOIR_KILL_REPORT=file` appends one JSON line per trial (cell, victim, slowest survivor, error).
 * Every trial of a cell runs; the cell fails if any did.
 */

import { assertNamed, killTrial } from "../helpers/kill.ts";
import { ucxAvailability } from "../../transports/ucx/lib.ts";

const ucx = ucxAvailability();
if (!ucx.ok) console.log(`kill matrix over ucx: skipped, ${ucx.reason}`);

const trials = Math.max(1, Number(Deno.env.get("CHOIR_KILL_TRIALS") ?? 1));
const report = Deno.env.get("CHOIR_KILL_REPORT");
const OPS = [
  "allReduce",
  "broadcast",
  "reduce",
  "allGather",
  "reduceScatter",
  "allToAll",
  "gather",
  "scatter",
  "barrier",
];

for (const storeOnRank0 of [false, true]) {
  const where = storeOnRank0 ? "rank 0 serves the store" : "external store";
  // "tcp lazy": links opened on first use (CHOIR_CONNECT=lazy, what groups above 16 ranks do): a rank
  // tells only the peers it is linked to, and the blame still reaches every survivor.
  for (const variant of ["tcp", "tcp lazy", "shm", "ucx"]) {
    const transport = variant.split(" ")[0];
    for (const op of OPS) {
      const ignore = transport === "ucx" && !ucx.ok;
      const name =
        `SIGKILL of a random rank of 4 during ${op} (${variant}, ${where}), ${trials} trial(s): the survivors name it`;
      Deno.test({ name, ignore }, async () => {
        const failures: string[] = [];
        for (let t = 0; t < trials; t++) {
          // With the store on rank 0, the first trial kills rank 0 itself.
          const victim = storeOnRank0 && t === 0 ? 0 : Math.floor(Math.random() * 4);
          const count = op === "allReduce" ? 65536 : 4096;
          const env: Record<string, string> | undefined = transport === "ucx"
            ? { UCX_TLS: "tcp" }
            : variant === "tcp lazy"
            ? { CHOIR_CONNECT: "lazy" }
            : undefined;
          let error: string | undefined;
          let slowest = -1;
          try {
            const results = await killTrial({
              op,
              transport,
              count,
              worldSize: 4,
              victim,
              storeOnRank0,
              env,
            });
            slowest = Math.max(...results.map((r) => r.ms));
            assertNamed(results, victim, `${op} trial ${t}, victim ${victim}`);
          } catch (e) {
            error = e instanceof Error ? e.message : String(e);
            failures.push(error);
          }
          if (report) {
            const line = {
              op,
              transport: variant,
              storeOnRank0,
              trial: t,
              victim,
              slowestMs: slowest,
              error,
            };
            await Deno.writeTextFile(report, JSON.stringify(line) + "\n", { append: true });
          }
        }
        if (failures.length) {
          throw new Error(`${failures.length} of ${trials} trials failed:\n${failures.join("\n")}`);
        }
      });
    }
  }
}
