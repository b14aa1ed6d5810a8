/**
 * @module
 * Opening OpenBLAS (`libopenblas.so.0`, Debian's libopenblas0) through Deno FFI with a clean "not
 * here": null when FFI is not permitted or the library is missing, never a permission prompt. Each
 * user binds the symbols it needs and caches the result.
 */

/** `openblas_set_num_threads`, bound (optional) with every symbol set so it can be called. */
const THREADS = {
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
} as const;

/**
 * Binds `symbols` from OpenBLAS, limited to one thread (ranks already occupy the cores, and OpenBLAS's
 * own threads would fight them); null when it cannot be loaded.
 */
export function openOpenBlas<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] | null {
  try {
    // Query first: without --allow-ffi, dlopen would prompt on a terminal instead of failing.
    if (typeof Deno === "undefined" || Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return null;
    }
    const lib = Deno.dlopen("libopenblas.so.0", { ...symbols, ...THREADS }).symbols;
    lib.openblas_set_num_threads?.(1);
    return lib as Deno.DynamicLibrary<S>["symbols"];
  } catch {
    return null;
  }
}
