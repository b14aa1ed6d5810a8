/**
 * @module
 * Without a CUDA driver: importing gpu/ works, cudaAvailable() is false, and GPU calls throw
 * LibraryUnavailableError naming the library. Run in a child process whose CHOIR_CUDA_PATH names a
 * library that does not exist, so it holds on GPU machines too.
 */

import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("gpu/ without a driver: import works, cudaAvailable() is false, calls throw a clear error", async () => {
  const program = `
    import { cudaAvailable, GpuTensor, cublasAvailable } from "${ROOT}gpu/mod.ts";
    import { LibraryUnavailableError } from "${ROOT}errors.ts";
    const out = { available: cudaAvailable(), cublas: cublasAvailable(), error: "", typed: false };
    try { GpuTensor.zeros("f32", 4); } catch (e) { out.error = String(e); out.typed = e instanceof LibraryUnavailableError; }
    console.log(JSON.stringify(out));
  `;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", program],
    env: { CHOIR_CUDA_PATH: "/nonexistent/libcuda.so.1", CHOIR_CUBLAS_PATH: "/nonexistent", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(r.stdout);
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  const out = JSON.parse(text.trim().split("\n").pop()!);
  assert.equal(out.available, false);
  assert.equal(out.typed, true, out.error);
  assert.match(out.error, /\/nonexistent\/libcuda\.so\.1 could not be opened/);
  assert.match(out.error, /NVIDIA driver/);
});

/** cuBLAS looked up in a child whose CHOIR_CUBLAS_PATH names nothing: "found <path>" or the error. */
async function cublasLookup(): Promise<string> {
  const program = `
    import { cublasLibrary } from "${ROOT}gpu/cublas.ts";
    try { console.log("found " + cublasLibrary()); } catch (e) { console.log(String(e)); }
  `;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", program],
    env: { CHOIR_CUBLAS_PATH: "/nonexistent/cublas-dir", NO_COLOR: "1", PATH: Deno.env.get("PATH") ?? "" },
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(r.stdout);
}

// Decided before the tests run: where a real cuBLAS is installed the lookup finds it, and the
// not-found message cannot be shown.
const lookup = await cublasLookup();
const cublasFound = lookup.startsWith("found");
if (cublasFound) {
  console.log(
    `no_driver_test.ts: skipped: a real cuBLAS is installed here (${
      lookup.trim().slice(6)
    }), so the not-found message cannot be shown`,
  );
}

Deno.test({
  name: "cuBLAS not found: the error lists where it looked",
  ignore: cublasFound,
  fn: () => {
    assert.match(lookup, /LibraryUnavailableError/);
    assert.match(lookup, /\/nonexistent\/cublas-dir\/libcublas\.so\.13/);
    assert.match(lookup, /CHOIR_CUBLAS_PATH/);
  },
});
