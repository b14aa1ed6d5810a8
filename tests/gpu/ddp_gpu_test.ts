/**
 * @module
 * DDP on the GPU: DistributedDataParallel over GpuTensor parameters (every bucket kind, rebuild,
 * noSync, join) against float64 averages, and `examples/train_mnist.ts --device cuda` with 2 ranks
 * sharing one GPU reaching the loss and accuracy of the CPU run with the same flags (same initial
 * weights, same data order). On the mock driver of tests/gpu/mock when no GPU is here (it checks the
 * host side and the layer math, as its kernels mirror gpu/kernels/nn.cu), and on the real driver when
 * there is one.
 */

import assert from "node:assert/strict";
import { resultOf, runRanks } from "../helpers/ranks.ts";
import { mockCudaLibrary, mockEnv } from "../helpers/mock_cuda.ts";
import { cudaAvailable } from "../../gpu/mod.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const mock = await mockCudaLibrary();
const gpuEnv: Record<string, string> | null = cudaAvailable()
  ? {}
  : typeof mock === "string"
  ? mockEnv(mock)
  : null;
if (gpuEnv === null) {
  console.log(`ddp_gpu_test: skipped: no GPU and no mock driver (${(mock as { skip: string }).skip})`);
}

async function train(extra: string[], env: Record<string, string>): Promise<{ loss: number; acc: number }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `${ROOT}launch/mod.ts`,
      "--nproc-per-node",
      "2",
      `${ROOT}examples/train_mnist.ts`,
      "--epochs",
      "1",
      "--hidden",
      "64",
      ...extra,
    ],
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout);
  assert.equal(r.code, 0, out + new TextDecoder().decode(r.stderr));
  const m = out.match(/epoch 1\/1: loss ([\d.]+), test accuracy ([\d.]+)%/);
  assert.ok(m, out);
  return { loss: Number(m[1]), acc: Number(m[2]) };
}

Deno.test({
  name: `train_mnist --device cuda, 2 ranks on one ${
    cudaAvailable() ? "GPU" : "mock GPU"
  }: the CPU run's loss and accuracy`,
  ignore: gpuEnv === null,
  fn: async () => {
    const [gpu, cpu] = [await train(["--device", "cuda"], gpuEnv!), await train([], {})];
    assert.ok(Math.abs(gpu.loss - cpu.loss) < 0.01, `loss GPU ${gpu.loss}, CPU ${cpu.loss}`);
    assert.ok(Math.abs(gpu.acc - cpu.acc) < 1, `accuracy GPU ${gpu.acc}%, CPU ${cpu.acc}%`);
    assert.ok(gpu.acc > 85, `accuracy ${gpu.acc}%`);
  },
});

const cases = [[2, "shm", true], [2, "tcp", false], [3, "shm", false]] as const;
for (const [worldSize, transport, view] of cases) {
  Deno.test({
    name: `DistributedDataParallel on GpuTensors, ${worldSize} ranks on one ${
      cudaAvailable() ? "GPU" : "mock GPU"
    } over ${transport}${view ? ", gradientAsBucketView" : ""}: float64 averages, rebuild, noSync, join`,
    ignore: gpuEnv === null,
    fn: async () => {
      const outs = await runRanks({
        script: "tests/fixtures/ddp_gpu_worker.ts",
        worldSize,
        args: [JSON.stringify({ view })],
        env: { ...gpuEnv, CHOIR_TRANSPORT: transport },
        deadlineMs: 120_000,
      });
      for (const out of outs) {
        assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
        const res = resultOf<{ checks: number; failures: string[] }>(out);
        assert.deepEqual(res.failures, [], `rank ${out.rank}`);
        assert.ok(res.checks >= 20, `${res.checks} checks`);
      }
    },
  });
}
