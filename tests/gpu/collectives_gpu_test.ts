/**
 * @module
 * GPU tensors end to end across real processes: the unit checks of one process (copies, streams,
 * JIT log, every PTX reduce kernel, cuBLAS, IPC rules) and every collective on GpuTensors with 2 and
 * 4 ranks sharing one GPU, through CUDA IPC and through staging, over tcp and shm, each result checked
 * against the float64 reference. Runs on the real driver when this machine has a GPU, and always on the
 * mock driver of tests/gpu/mock (which checks the host side: FFI types, packing, order, staging).
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";
import { mockCudaLibrary, mockEnv } from "../helpers/mock_cuda.ts";
import { cudaAvailable } from "../../gpu/mod.ts";
import { ucxAvailability } from "../../transports/ucx/lib.ts";

const mock = await mockCudaLibrary();
const drivers: { name: string; env: Record<string, string> | null; skip?: string }[] = [
  typeof mock === "string"
    ? { name: "mock driver", env: mockEnv(mock) }
    : { name: "mock driver", env: null, skip: mock.skip },
  cudaAvailable() ? { name: "GPU", env: {} } : {
    name: "GPU",
    env: null,
    skip: "no CUDA driver or device on this machine (the GPU run is owed: docs/gpu.md)",
  },
];
for (const d of drivers) if (d.skip) console.log(`collectives_gpu_test: ${d.name} tests skipped: ${d.skip}`);
const ucx = ucxAvailability();
if (!ucx.ok) console.log(`collectives_gpu_test: the ucx cases are skipped: ${ucx.reason}`);

interface UnitResult {
  checks: number;
  failures: string[];
}

/** Runs one process of `tests/fixtures/<name>`, expects exit 0 and returns its `RESULT` line. */
async function fixtureResult<T>(name: string, args: string[], env: Record<string, string>): Promise<T> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL(`../fixtures/${name}`, import.meta.url).pathname, ...args],
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = {
    rank: 0,
    code: r.code,
    stdout: new TextDecoder().decode(r.stdout),
    stderr: new TextDecoder().decode(r.stderr),
  };
  assert.equal(out.code, 0, out.stderr);
  return resultOf<T>(out);
}

for (const d of drivers) {
  Deno.test({
    name: `${d.name}: device, copies, streams, JIT log, every reduce kernel, cuBLAS, IPC rules`,
    ignore: d.env === null,
    fn: async () => {
      const res = await fixtureResult<UnitResult>("gpu_unit_check.ts", [], d.env!);
      assert.deepEqual(res.failures, []);
      assert.ok(res.checks > 400, `${res.checks} checks`);
    },
  });

  // Lengths kept small for CI on 2 cores (4 ranks share them); the device script runs larger ones.
  const cases = [
    [2, "staged", "tcp", [1, 1000, 70001]],
    [2, "ipc", "shm", [1, 70001]],
    [4, "ipc", "tcp", [1000]],
    [4, "staged", "shm", [1000]],
    [2, "staged", "ucx", [1, 70001]],
  ] as const;
  for (const [worldSize, path, transport, lengths] of cases) {
    Deno.test({
      name: `${d.name}: collectives on GpuTensors, ${worldSize} ranks on one GPU, ${path} over ${transport}`,
      ignore: d.env === null || (transport === "ucx" && !ucx.ok),
      fn: async () => {
        const outs = await runRanks({
          script: "tests/fixtures/gpu_collective_worker.ts",
          worldSize,
          args: [
            JSON.stringify({ path, lengths, chunkBytes: 65536, others: path === "staged" }),
          ],
          env: { ...d.env, CHOIR_TRANSPORT: transport },
          deadlineMs: 180_000,
        });
        for (const out of outs) {
          assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
          const res = resultOf<UnitResult>(out);
          assert.deepEqual(res.failures, [], `rank ${out.rank}`);
          assert.ok(res.checks > 30, `${res.checks} checks`);
        }
      },
    });
  }
}

for (const d of drivers) {
  Deno.test({
    name: `${d.name}: allReduce on GpuTensors between Worker ranks of one process (direct and staged)`,
    ignore: d.env === null,
    fn: async () => {
      const results = await fixtureResult<UnitResult[]>("gpu_worker_main.ts", ["3"], d.env!);
      assert.equal(results.length, 3);
      for (const res of results) {
        assert.deepEqual(res.failures, []);
        assert.equal(res.checks, 3);
      }
    },
  });
}
