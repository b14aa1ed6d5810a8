/**
 * @module
 * The elastic launcher across "hosts": 3 network namespaces joined by a bridge, one launcher each, 2
 * workers each, training examples/elastic_linear.ts. An uninterrupted run completes; a run in which one
 * worker is killed mid-run restarts (--max-restarts 1), resumes from the last commit and ends with the
 * same parameters, bit for bit. Needs root and `ip` (skipped with the reason printed otherwise).
 */

import assert from "node:assert/strict";
import { makeNetnsBed, type NetnsBed, probeNetns } from "../helpers/netns_bed.ts";
import { roundLogDir } from "../../launch/elastic/rank_logs.ts";

const root = new URL("../../", import.meta.url).pathname;
const STEPS = 160;

const { netns: noNetns } = await probeNetns("choir-pe");
if (noNetns) {
  console.log(`elastic_netns_test.ts: skipped: network namespaces are not available here (${noNetns})`);
}

interface NodeRun {
  code: number;
  lines: string[];
}

/** Runs one launcher per node; `onLine` sees every line as it comes (node, text). */
async function runJob(
  bed: NetnsBed,
  port: number,
  id: string,
  logDir: string,
  onLine: (node: number, line: string) => void = () => {},
): Promise<NodeRun[]> {
  const kids = Array.from({ length: bed.nodes }, (_, i) =>
    bed.spawn(i, Deno.execPath(), [
      "run",
      "-A",
      `${root}launch/mod.ts`,
      "--nnodes",
      "3",
      "--nproc-per-node",
      "2",
      "--node-rank",
      String(i),
      "--rdzv-endpoint",
      `${bed.addr(0)}:${port}`,
      "--rdzv-id",
      id,
      "--token",
      "elastic-netns",
      "--max-restarts",
      "1",
      "--monitor-interval",
      "0.05",
      "--log-dir",
      logDir,
      `${root}examples/elastic_linear.ts`,
      String(STEPS),
    ], { CHOIR_DETERMINISTIC: "1" }));
  const timer = setTimeout(() => kids.forEach((k) => k.kill("SIGKILL")), 150_000);
  try {
    return await Promise.all(kids.map(async (k, i) => {
      const lines: string[] = [];
      const read = async (s: ReadableStream<Uint8Array>) => {
        let pending = "";
        for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
          const parts = (pending + chunk).split("\n");
          pending = parts.pop()!;
          for (const l of parts) {
            lines.push(l);
            onLine(i, l);
          }
        }
        if (pending) lines.push(pending);
      };
      await Promise.all([read(k.stdout), read(k.stderr)]);
      return { code: (await k.status).code, lines };
    }));
  } finally {
    clearTimeout(timer);
  }
}

function resultOf(runs: NodeRun[]): { w: number[]; b: number; resumedFrom: number | null } {
  const line = runs[0].lines.find((l) => l.startsWith("[rank 0] RESULT "));
  assert.ok(line, `no RESULT from rank 0:\n${runs[0].lines.join("\n")}`);
  return JSON.parse(line.slice("[rank 0] RESULT ".length));
}

const all = (runs: NodeRun[]) =>
  runs.map((r, i) => r.lines.map((l) => `[node ${i}] ${l}`).join("\n")).join("\n");

Deno.test({
  name: "elastic launch, 3 nodes x 2 ranks in network namespaces: a killed worker restarts and resumes",
  ignore: noNetns !== null,
  fn: async (t) => {
    const bed = await makeNetnsBed(3);
    if (typeof bed === "string") throw new Error(`the network namespaces could not be built: ${bed}`);
    const logDir = await Deno.makeTempDir({ prefix: "choir-elastic-logs-" });
    try {
      let reference: { w: number[]; b: number } | undefined;
      await t.step("uninterrupted run", async () => {
        const runs = await runJob(bed, 29400, "uninterrupted", logDir);
        assert.deepEqual(runs.map((r) => r.code), [0, 0, 0], all(runs));
        const r = resultOf(runs);
        assert.equal(r.resumedFrom, null);
        reference = { w: r.w, b: r.b };
        // Round 0 had 3 nodes in --node-rank order.
        assert.ok(
          runs[1].lines.some((l) =>
            /round 0: 3 node\(s\), world size 6; this node is group rank 1 \(ranks 2\.\.3\)/.test(l)
          ),
          all(runs),
        );
      });

      await t.step(
        "rank 3 killed mid-run: the job restarts, resumes from the last commit, same parameters",
        async () => {
          let pid: number | undefined;
          let killedAt: number | undefined;
          const runs = await runJob(bed, 29401, "killed", logDir, (node, line) => {
            if (node !== 1) return;
            const p = line.match(/^\[rank 3\] rank 3: pid (\d+)$/);
            if (p && pid === undefined) pid = Number(p[1]);
            const s = line.match(/^\[rank 3\] rank 3: step (\d+) /);
            if (s && killedAt === undefined && pid !== undefined) {
              killedAt = Number(s[1]);
              Deno.kill(pid, "SIGKILL");
            }
          });
          const text = all(runs);
          assert.ok(killedAt !== undefined && killedAt < STEPS, `rank 3 was not killed mid-run:\n${text}`);
          assert.deepEqual(runs.map((r) => r.code), [0, 0, 0], text);
          // Every agent names the root cause and restarts once.
          for (const r of runs) {
            assert.ok(
              r.lines.some((l) =>
                /rank 3 was killed by SIGKILL \(exit code 137\) \(first failure; node 1 at 10\.78\.0\.2, round 0\); restarting the workers \(restart 1 of 1\)/
                  .test(l)
              ),
              text,
            );
          }
          const r = resultOf(runs);
          assert.ok(
            r.resumedFrom !== null && r.resumedFrom >= killedAt! - 1,
            `resumed from ${r.resumedFrom}`,
          );
          assert.deepEqual({ w: r.w, b: r.b }, reference);
          // --log-dir: a file per rank and round on the node that ran it.
          const log = await Deno.readTextFile(`${await roundLogDir(logDir, "killed", 0)}/rank_3.log`);
          assert.match(log, /rank 3: pid \d+/);
          assert.match(
            await Deno.readTextFile(`${await roundLogDir(logDir, "killed", 1)}/rank_0.log`),
            /RESULT /,
          );
        },
      );
    } finally {
      await bed.close();
      await Deno.remove(logDir, { recursive: true });
    }
  },
});
