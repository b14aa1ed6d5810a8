/**
 * @module
 * Test helper: builds the mock CUDA driver + cuBLAS of tests/gpu/mock/mock_cuda.c with gcc (once per
 * process) and gives the env that points choir at it. Without gcc it gives the reason to skip.
 */

const SOURCE = new URL("../gpu/mock/mock_cuda.c", import.meta.url).pathname;
let built: Promise<string | { skip: string }> | null = null;

/** The path of the built mock library, or `{ skip }` with the reason it could not be built. */
export function mockCudaLibrary(): Promise<string | { skip: string }> {
  built ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "choir-mockcuda-" });
    const out = `${dir}/libmockcuda.so`;
    try {
      const r = await new Deno.Command("gcc", {
        args: ["-O2", "-shared", "-fPIC", "-Wall", "-o", out, SOURCE, "-lm", "-lrt"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (r.code !== 0) return { skip: `gcc failed: ${new TextDecoder().decode(r.stderr)}` };
      return out;
    } catch (e) {
      return { skip: `no C compiler to build the mock CUDA driver (${e instanceof Error ? e.message : e})` };
    }
  })();
  return built;
}

/** The env that makes choir open the mock as both the CUDA driver and cuBLAS. */
export function mockEnv(lib: string): Record<string, string> {
  return { CHOIR_CUDA_PATH: lib, CHOIR_CUBLAS_PATH: lib };
}
