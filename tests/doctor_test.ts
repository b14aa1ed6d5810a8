/**
 * @module
 * `deno task doctor`: its JSON report agrees with what the libraries say in this process, it sees the
 * (mock) GPU and cuBLAS when they are there, and with no permissions it names the flags instead of
 * failing.
 */

import assert from "node:assert/strict";
import { blasAvailable } from "../collectives/kernels/blas.ts";
import { ucxAvailability } from "../transports/ucx/lib.ts";
import { cudaAvailable } from "../gpu/mod.ts";
import type { EnvironmentReport } from "../doctor.ts";
import { mockCudaLibrary, mockEnv } from "./helpers/mock_cuda.ts";

const DOCTOR = new URL("../doctor.ts", import.meta.url).pathname;

async function doctor(flags: string[], env: Record<string, string> = {}): Promise<EnvironmentReport> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, DOCTOR, "--json"],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(o.stdout);
  assert.equal(o.code, 0, out + new TextDecoder().decode(o.stderr));
  return JSON.parse(out) as EnvironmentReport;
}

Deno.test("doctor: the report agrees with this process's own view of the libraries", async () => {
  const r = await doctor(["--allow-all"]);
  assert.equal(r.permissions.ffi, "granted");
  assert.equal(r.sharedMemory.ok, true, r.sharedMemory.detail);
  assert.equal(r.openblas.ok, blasAvailable(), r.openblas.detail);
  assert.equal(r.ucx.ok, ucxAvailability().ok, r.ucx.detail);
  assert.equal(r.cuda.ok, cudaAvailable(), r.cuda.detail);
  assert.ok(r.host.cores >= 1);
  assert.equal(r.job.ok, false, "not started as a rank");
});

Deno.test("doctor: names the job from RANK and WORLD_SIZE", async () => {
  const r = await doctor(["--allow-all"], {
    RANK: "1",
    WORLD_SIZE: "4",
    MASTER_ADDR: "10.0.0.1",
    MASTER_PORT: "29500",
  });
  assert.equal(r.job.ok, true);
  assert.match(r.job.detail, /rank 1 of 4/);
  assert.match(r.job.detail, /store 10\.0\.0\.1:29500/);
});

const mock = await mockCudaLibrary();
Deno.test({
  name: "doctor: sees the GPU and cuBLAS (mock driver)",
  ignore: typeof mock !== "string",
  fn: async () => {
    const r = await doctor(["--allow-all"], mockEnv(mock as string));
    assert.equal(r.cuda.ok, true, r.cuda.detail);
    assert.equal(r.cuda.devices[0].name, "Mock GPU 0");
    assert.equal(r.cublas.ok, true, r.cublas.detail);
  },
});
if (typeof mock !== "string") console.log(`doctor_test: the mock GPU case is skipped: ${mock.skip}`);

Deno.test("doctor: with no permissions, every finding names the flag it needs", async () => {
  const r = await doctor([]);
  assert.equal(r.permissions.ffi, "prompt");
  for (const f of [r.sharedMemory, r.openblas, r.ucx, r.cuda, r.cublas]) {
    assert.equal(f.ok, false);
    assert.match(f.detail, /--allow-ffi/);
  }
  assert.match(r.job.detail, /--allow-env/);
});
