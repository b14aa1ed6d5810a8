/**
 * @module
 * GPU tensors through the CUDA driver API (coming in a later release). For now this entry point only
 * reports whether a CUDA driver can be loaded, so that programs can branch on it.
 */

/** Whether `libcuda.so.1` can be opened by this process (needs `--allow-ffi`). */
export function cudaAvailable(): boolean {
  try {
    const lib = Deno.dlopen("libcuda.so.1", { cuInit: { parameters: ["u32"], result: "i32" } });
    lib.close();
    return true;
  } catch {
    return false;
  }
}
