/**
 * @module
 * The buffer contract after a failed collective (README, "When a collective fails"): the inputs of
 * out-of-place ops, the tensors an op only reads on a rank, and tensors not passed to the op still
 * hold what they held, after a peer is killed mid-op (SIGKILL, over tcp and shm) and after a mismatch;
 * a failed allReduce on a subview of a `pg.alloc` tensor leaves the rest of that allocation and every
 * other allocation alone. 2 ranks; rank 1 is the one killed or the one that calls something else.
 */

import assert from "node:assert/strict";
import { killTrial, type SurvivorResult } from "../helpers/kill.ts";
import { resultOf, runRanks } from "../helpers/ranks.ts";

interface BufferResult extends SurvivorResult {
  /** Successful calls before the failure. */
  calls: number;
  /** Per buffer the op only reads (and the bystanders): whether it still holds its pattern. */
  intact: Record<string, boolean>;
}

const script = new URL("../fixtures/failure_buffers_worker.ts", import.meta.url);

/** The op, elements per rank, and the root (the survivor, rank 0, is the root where it reads its tensor). */
const OPS: [string, number, number][] = [
  ["allGather", 65536, 0],
  ["allGatherList", 65536, 0],
  ["reduceScatter", 65536, 0],
  ["reduceScatterList", 65536, 0],
  ["allToAll", 65536, 0],
  ["gather", 65536, 0],
  ["scatter", 65536, 0],
  ["broadcast", 65536, 0],
  ["reduce", 65536, 1], // rank 0 is not the root: its tensor is only read
];

function assertIntact(r: BufferResult, name: string, what: string): void {
  const ctx = `${what}: ${r.name}: ${r.message} (after ${r.calls} calls, intact ${JSON.stringify(r.intact)})`;
  assert.equal(r.name, name, ctx);
  assert.ok(Object.keys(r.intact).length >= 2, ctx);
  for (const [buf, ok] of Object.entries(r.intact)) assert.ok(ok, `${ctx}: ${buf} changed`);
}

for (const transport of ["tcp", "shm"]) {
  const ops = transport === "shm" ? [...OPS, ["allocAllReduce", 65536, 0] as [string, number, number]] : OPS;
  for (const [op, count, root] of ops) {
    Deno.test(`${transport}: ${op}, peer killed mid-op: the buffers it only reads and the bystanders are untouched`, async () => {
      const [r0] = await killTrial<BufferResult>({
        op,
        transport,
        count,
        worldSize: 2,
        victim: 1,
        script,
        args: [op, String(count), "kill", String(root)],
      });
      assertIntact(r0, "PeerLostError", `${transport} ${op}`);
    });
  }
  const mismatched = transport === "shm" ? ["allGather", "reduceScatter", "allToAll", "allocAllReduce"] : [
    "allGather",
    "reduceScatter",
    "allToAll",
  ];
  for (const op of mismatched) {
    Deno.test(`${transport}: ${op} against an allReduce: CollectiveMismatchError, read-only buffers untouched`, async () => {
      const outs = await runRanks({
        script: script.pathname,
        worldSize: 2,
        args: [op, "65536", "mismatch", "0"],
        env: { CHOIR_TRANSPORT: transport },
        deadlineMs: 30_000,
      });
      for (const out of outs) {
        assertIntact(resultOf<BufferResult>(out), "CollectiveMismatchError", `${op} rank ${out.rank}`);
      }
    });
  }
}
