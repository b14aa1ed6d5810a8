/**
 * @module
 * `deno task bench:gpu`: choir's GPU numbers, in the shape of ../shared/anchors/gpu_torch_anchor.py so
 * the two sit side by side from one run on one card: device-to-device copy and the PTX SUM kernel
 * (x += y, f32) at 64/256/1024 MiB; SGEMM and GemmEx (f16, bf16; f32 accumulation) at n = 4096 and
 * 8192; then the GPU allreduce of 256 MiB f32 across 2 ranks sharing the GPU, through CUDA IPC and
 * through staging (bench/gpu_allreduce_rank.ts), with busbw. One JSON line per measurement.
 *
 * Run: `deno task bench:gpu [--reps 20] [--out results.jsonl] [--no-allreduce] [--allreduce-mib 256]
 * [--mib 64,256,1024] [--gemm 4096,8192]` (small sizes make it a smoke test, e.g. on the mock driver).
 * Timing: CUDA events around each op after 3 warm-ups, median of --reps; inputs are random, not zeros.
 */

import {
  copyDtoD,
  cublas,
  cudaAvailable,
  CudaEvent,
  deviceInfo,
  driverVersion,
  GpuTensor,
  launchReduce,
  synchronize,
} from "../gpu/mod.ts";

function flag(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : fallback;
}
const reps = Number(flag("reps", "20"));
const outFile = flag("out", "");

if (!cudaAvailable()) {
  console.error("bench:gpu needs a CUDA GPU and its driver (libcuda.so.1); cudaAvailable() is false here.");
  Deno.exit(1);
}
const info = deviceInfo(0);
const base = { impl: "choir", device: info.name, driver: driverVersion() };

function report(row: Record<string, unknown>): void {
  const line = JSON.stringify({ ...row, ...base });
  console.log(line);
  if (outFile) Deno.writeTextFileSync(outFile, line + "\n", { append: true });
}

/** Median seconds of `fn`, timed with CUDA events on the default stream. */
function timeOp(fn: () => void, n = reps): number {
  for (let i = 0; i < 3; i++) fn();
  synchronize();
  const starts = Array.from({ length: n }, () => new CudaEvent(0));
  const ends = Array.from({ length: n }, () => new CudaEvent(0));
  for (let i = 0; i < n; i++) {
    starts[i].record();
    fn();
    ends[i].record();
  }
  synchronize();
  const ms = starts.map((s, i) => ends[i].elapsedSince(s)).sort((a, b) => a - b);
  [...starts, ...ends].forEach((e) => e.destroy());
  return ms[Math.floor(ms.length / 2)] / 1e3;
}

function random(dtype: "f32" | "f16" | "bf16", n: number): GpuTensor {
  // Uniform in [-1, 1); halves from the top bits of an f32 (bf16) or an exact small f16.
  const f = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    f[i] = s / 2 ** 31 - 1;
  }
  if (dtype === "f32") return GpuTensor.fromHost(f);
  const h = new Uint16Array(n);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) {
    if (dtype === "bf16") h[i] = u[i] >>> 16;
    else h[i] = (f[i] < 0 ? 0x8000 : 0) | (Math.min(14, Math.floor(Math.abs(f[i]) * 15)) + 1) << 10;
  }
  return GpuTensor.fromHost(h, { dtype });
}

for (const mib of flag("mib", "64,256,1024").split(",").map(Number)) {
  const n = (mib << 20) / 4;
  using src = random("f32", n);
  using dst = random("f32", n);
  using y = random("f32", n);
  let t = timeOp(() => copyDtoD(dst.ptr, src.ptr, n * 4, 0, undefined));
  report({ op: "d2d_copy", bytes: n * 4, s: t, GBps: (2 * n * 4) / t / 1e9 });
  t = timeOp(() =>
    launchReduce({ op: "sum", dtype: "f32", srcs: [dst.ptr, y.ptr], dsts: [dst.ptr], count: n })
  );
  report({
    op: "add_inplace_f32",
    kernel: "choir_reduce_sum_f32",
    bytes: n * 4,
    s: t,
    GBps: (3 * n * 4) / t / 1e9,
  });
}

const h = cublas(0);
for (const dtype of ["f32", "f16", "bf16"] as const) {
  for (const n of flag("gemm", "4096,8192").split(",").map(Number)) {
    using a = random(dtype, n * n);
    using b = random(dtype, n * n);
    using c = GpuTensor.empty(dtype, n * n);
    const call = dtype === "f32"
      ? () => h.sgemm("N", "N", n, n, n, 1, b.ptr, n, a.ptr, n, 0, c.ptr, n)
      : () => h.gemmEx(dtype, "N", "N", n, n, n, 1, b.ptr, n, a.ptr, n, 0, c.ptr, n);
    const t = timeOp(call, Math.max(5, Math.floor(reps / 2)));
    const name = dtype === "f32" ? "matmul_float32" : dtype === "f16" ? "matmul_float16" : "matmul_bfloat16";
    report({
      op: name,
      call: dtype === "f32" ? "cublasSgemm_v2" : "cublasGemmEx",
      n,
      s: t,
      TFLOPs: (2 * n ** 3) / t / 1e12,
    });
  }
}

if (!Deno.args.includes("--no-allreduce")) {
  const mib = Number(flag("allreduce-mib", "256"));
  for (const path of ["ipc", "staged"]) {
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../launch/mod.ts", import.meta.url).pathname,
        "--nproc-per-node",
        "2",
        new URL("./gpu_allreduce_rank.ts", import.meta.url).pathname,
        String(mib),
        path,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const line = new TextDecoder().decode(r.stdout).split("\n").find((l) => l.includes("RESULT "));
    if (r.code !== 0 || !line) {
      report({ op: `allreduce_${path}`, error: `exit ${r.code}` });
      continue;
    }
    report(JSON.parse(line.slice(line.indexOf("RESULT ") + 7)));
  }
}
