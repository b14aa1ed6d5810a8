/**
 * @module
 * The shipped PTX (gpu/kernels/reduce_ptx.ts): every reduce kernel is there with the parameter list
 * kernels.ts packs, and ptxas assembles every module for sm_80 and sm_90 (skipped, with the reason,
 * where ptxas is not installed).
 */

import assert from "node:assert/strict";
import { PTX } from "../../gpu/kernels/reduce_ptx.ts";
import { hasReduceKernel, KERNEL_DTYPES, reduceKernelName } from "../../gpu/kernels.ts";
import { REDUCE_OPS } from "../../dtype.ts";

function ptxas(): string | null {
  for (const p of ["ptxas", "/usr/local/cuda/bin/ptxas", "/usr/local/cuda-13.0/bin/ptxas"]) {
    try {
      const r = new Deno.Command(p, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync();
      if (r.code === 0) return p;
    } catch { /* not there */ }
  }
  return null;
}
const PTXAS = ptxas();
if (!PTXAS) {
  console.log("ptx_test: ptxas not found (CUDA toolkit not installed): the assembly test is skipped");
}

Deno.test("every reduce kernel is in the PTX with the packed parameter list", () => {
  let kernels = 0;
  for (const dtype of KERNEL_DTYPES) {
    for (const op of REDUCE_OPS) {
      const name = reduceKernelName(op, dtype);
      const present = PTX[dtype].includes(`.entry ${name}(`);
      assert.equal(present, hasReduceKernel(dtype, op), `${name}: in PTX ${present}`);
      if (!present) continue;
      kernels++;
      const head = PTX[dtype].slice(PTX[dtype].indexOf(`.entry ${name}(`)).split(")")[0];
      const params = [...head.matchAll(/\.param (\.align 8 \.b8|\.u64|\.u32|\.f64) \w+(\[\d+\])?/g)]
        .map((m) => m[1] + (m[2] ?? ""));
      assert.deepEqual(
        params,
        [".align 8 .b8[128]", ".u32", ".align 8 .b8[128]", ".u32", ".u64", ".f64"],
        name,
      );
    }
  }
  assert.equal(kernels, 4 * 6 + 8);
  // The nn kernels' parameters, in the order ddp/nn/gpu_layers.ts passes them (and the mock reads them).
  const u64 = ".u64", u32 = ".u32", f32 = ".f32";
  const nn: Record<string, string[]> = {
    bias_add: [u64, u64, u32, u32],
    bias_grad: [u64, u64, u32, u32],
    gelu: [u64, u64, u64],
    gelu_backward: [u64, u64, u64, u64],
    softmax_xent: [u64, u64, u64, u64, u32, u32],
    argmax_rows: [u64, u64, u32, u32],
    adamw: [u64, u64, u64, u64, u64, f32, f32, f32, f32, f32, f32, f32],
  };
  for (const [k, want] of Object.entries(nn)) {
    const at = PTX.nn.indexOf(`.entry choir_${k}_f32(`);
    assert.ok(at >= 0, k);
    const head = PTX.nn.slice(at).split(")")[0];
    assert.deepEqual([...head.matchAll(/\.param (\.u64|\.u32|\.f32) /g)].map((m) => m[1]), want, k);
  }
});

Deno.test({
  name: "ptxas assembles every PTX module for sm_80 and sm_90",
  ignore: PTXAS === null,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "choir-ptx-" });
    try {
      for (const [name, text] of Object.entries(PTX)) {
        assert.match(text, /^\.version 7\.0$/m, `${name}: PTX ISA 7.0 (drivers from CUDA 11.0)`);
        await Deno.writeTextFile(`${dir}/${name}.ptx`, text);
        for (const sm of ["sm_80", "sm_90"]) {
          const r = await new Deno.Command(PTXAS!, {
            args: [`-arch=${sm}`, `${dir}/${name}.ptx`, "-o", `${dir}/${name}.${sm}.cubin`],
            stderr: "piped",
          }).output();
          assert.equal(r.code, 0, `${name} ${sm}: ${new TextDecoder().decode(r.stderr)}`);
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

function nvccRelease(): string | null {
  try {
    const r = new Deno.Command("nvcc", { args: ["--version"], stdout: "piped", stderr: "null" }).outputSync();
    return new TextDecoder().decode(r.stdout).match(/release [0-9.]+/)?.[0] ?? null;
  } catch {
    return null;
  }
}
const SHIPPED = new URL("../../gpu/kernels/reduce_ptx.ts", import.meta.url).pathname;
const shippedRelease = Deno.readTextFileSync(SHIPPED).match(/release [0-9.]+/)?.[0];
const nvcc = nvccRelease();
const regenSkip = nvcc === null
  ? "nvcc not found"
  : nvcc !== shippedRelease
  ? `nvcc is ${nvcc}, the shipped PTX came from ${shippedRelease}`
  : null;
if (regenSkip) console.log(`ptx_test: the regeneration check is skipped: ${regenSkip}`);

Deno.test({
  name: "reduce_ptx.ts is what gpu/kernels/build.sh makes from the .cu files next to it",
  ignore: regenSkip !== null,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "choir-ptxgen-" });
    try {
      const out = `${dir}/reduce_ptx.ts`;
      const r = await new Deno.Command("bash", {
        args: [new URL("../../gpu/kernels/build.sh", import.meta.url).pathname],
        env: { PTX_TS: out },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
      assert.ok(
        Deno.readTextFileSync(out) === Deno.readTextFileSync(SHIPPED),
        "stale PTX: run gpu/kernels/build.sh",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
