/**
 * @module
 * Every collective over UCX (CHOIR_TRANSPORT=ucx) between real processes, with UCX forced onto TCP,
 * POSIX shared memory and SysV shared memory plus CMA, world sizes 2 to 4, checked on every rank
 * against the independent reference. Skipped, with the reason printed, where libucp is missing.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";
import { ucxAvailability } from "../../transports/ucx/lib.ts";

interface WorkerResult {
  rank: number;
  checks: number;
  failures: string[];
}

const avail = ucxAvailability();
if (!avail.ok) console.log(`collectives over ucx: skipped, ${avail.reason}`);

for (
  const [tls, worldSize, hosts] of [
    ["tcp", 2, 1],
    ["tcp", 3, 1],
    // Each rank its own "host" (CHOIR_HOST_ID): no pid watch, UCX's peer-failure mode on every endpoint.
    ["tcp", 4, 4],
    ["posix,self", 2, 1],
    ["posix,self", 4, 1],
    ["sysv,cma,self", 3, 1],
    ["sysv,cma,self", 4, 1],
  ] as const
) {
  const where = hosts > 1 ? `, ${hosts} hosts` : "";
  Deno.test(
    `collectives over ucx (UCX_TLS=${tls}${where}), world size ${worldSize}`,
    { ignore: !avail.ok },
    async () => {
      const outs = await runRanks({
        script: "tests/fixtures/collective_worker.ts",
        worldSize,
        // Fewer dtypes than the tcp suite (the wire is what is under test), small chunks so the large
        // case pipelines, and a big case above the inline limit so payloads travel as separate messages.
        args: [
          JSON.stringify({
            lengths: [0, 1, 7, 1001],
            big: 30_011,
            chunkBytes: 16384,
            dtypes: ["f32", "i64", "u8"],
          }),
        ],
        env: (rank): Record<string, string> => ({
          CHOIR_TRANSPORT: "ucx",
          UCX_TLS: tls,
          ...(hosts > 1 ? { CHOIR_HOST_ID: `host-${rank}` } : {}),
        }),
      });
      for (const out of outs) {
        assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
        const res = resultOf<WorkerResult>(out);
        assert.deepEqual(res.failures, [], `rank ${out.rank} failures`);
        assert.ok(res.checks > 100, `rank ${out.rank} ran only ${res.checks} checks`);
      }
    },
  );
}
