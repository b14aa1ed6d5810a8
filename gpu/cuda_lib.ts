/**
 * @module
 * The CUDA driver symbols choir binds (`libcuda.so.1`), with their Deno FFI types, and the lazy loader.
 * Names are the exported versioned symbols (`cuMemAlloc_v2`), not the `cuda.h` macros; checking
 * results and wrapping handles is left to `cuda.ts`.
 */

import { readEnv } from "../config.ts";
import { LibraryUnavailableError } from "../errors.ts";

/** A CUipcMemHandle / CUipcEventHandle passed by value: 64 opaque bytes (`CU_IPC_HANDLE_SIZE`). */
const IPC_HANDLE = { struct: Array<"u8">(64).fill("u8") } as const;

/**
 * Every driver function choir calls. Types follow `cuda.h` of CUDA 13.0: CUresult and CUdevice are
 * `i32`, CUdeviceptr `u64`, handles (context, stream, event, module, function) `pointer`, out-parameters
 * `buffer` (a one-element typed array), `size_t` `usize`, `unsigned int` `u32`.
 */
export const CUDA_SYMBOLS = {
  cuInit: { parameters: ["u32"], result: "i32" },
  cuDriverGetVersion: { parameters: ["buffer"], result: "i32" },
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32" },
  cuGetErrorString: { parameters: ["i32", "buffer"], result: "i32" },
  cuDeviceGetCount: { parameters: ["buffer"], result: "i32" },
  cuDeviceGet: { parameters: ["buffer", "i32"], result: "i32" },
  cuDeviceGetName: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceGetAttribute: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceTotalMem_v2: { parameters: ["buffer", "i32"], result: "i32" },
  cuDeviceGetPCIBusId: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  // The primary context: retained, then made current (it is not pushed). cuCtxCreate is avoided on
  // purpose: its ABI changed in CUDA 13 (cuCtxCreate_v4 with a CUctxCreateParams*).
  cuDevicePrimaryCtxRetain: { parameters: ["buffer", "i32"], result: "i32" },
  cuDevicePrimaryCtxRelease_v2: { parameters: ["i32"], result: "i32" },
  cuCtxSetCurrent: { parameters: ["pointer"], result: "i32" },
  cuCtxGetCurrent: { parameters: ["buffer"], result: "i32" },
  cuCtxSynchronize: { parameters: [], result: "i32" },
  cuMemGetInfo_v2: { parameters: ["buffer", "buffer"], result: "i32" },
  cuMemAlloc_v2: { parameters: ["buffer", "usize"], result: "i32" },
  cuMemFree_v2: { parameters: ["u64"], result: "i32" },
  cuMemGetAddressRange_v2: { parameters: ["buffer", "buffer", "u64"], result: "i32" },
  cuMemHostAlloc: { parameters: ["buffer", "usize", "u32"], result: "i32" },
  cuMemFreeHost: { parameters: ["pointer"], result: "i32" },
  cuMemsetD8_v2: { parameters: ["u64", "u8", "usize"], result: "i32" },
  cuMemsetD8Async: { parameters: ["u64", "u8", "usize", "pointer"], result: "i32" },
  cuMemcpyHtoD_v2: { parameters: ["u64", "buffer", "usize"], result: "i32" },
  cuMemcpyDtoH_v2: { parameters: ["buffer", "u64", "usize"], result: "i32" },
  cuMemcpyDtoD_v2: { parameters: ["u64", "u64", "usize"], result: "i32" },
  // Async copies take the host side as a raw pointer: it must be pinned (cuMemHostAlloc) to overlap.
  cuMemcpyHtoDAsync_v2: { parameters: ["u64", "pointer", "usize", "pointer"], result: "i32" },
  cuMemcpyDtoHAsync_v2: { parameters: ["pointer", "u64", "usize", "pointer"], result: "i32" },
  cuMemcpyDtoDAsync_v2: { parameters: ["u64", "u64", "usize", "pointer"], result: "i32" },
  cuStreamCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuStreamDestroy_v2: { parameters: ["pointer"], result: "i32" },
  cuStreamSynchronize: { parameters: ["pointer"], result: "i32" },
  cuStreamQuery: { parameters: ["pointer"], result: "i32" },
  cuStreamWaitEvent: { parameters: ["pointer", "pointer", "u32"], result: "i32" },
  cuEventCreate: { parameters: ["buffer", "u32"], result: "i32" },
  cuEventDestroy_v2: { parameters: ["pointer"], result: "i32" },
  cuEventRecord: { parameters: ["pointer", "pointer"], result: "i32" },
  cuEventSynchronize: { parameters: ["pointer"], result: "i32" },
  cuEventQuery: { parameters: ["pointer"], result: "i32" },
  // CUDA 13 renamed the export to _v2 (same signature); older drivers have only the plain name.
  cuEventElapsedTime_v2: { parameters: ["buffer", "pointer", "pointer"], result: "i32", optional: true },
  cuEventElapsedTime: { parameters: ["buffer", "pointer", "pointer"], result: "i32", optional: true },
  cuModuleLoadDataEx: { parameters: ["buffer", "buffer", "u32", "buffer", "buffer"], result: "i32" },
  cuModuleUnload: { parameters: ["pointer"], result: "i32" },
  cuModuleGetFunction: { parameters: ["buffer", "pointer", "buffer"], result: "i32" },
  // f, grid x/y/z, block x/y/z, shared bytes, stream, void** kernelParams, void** extra
  cuLaunchKernel: {
    parameters: ["pointer", "u32", "u32", "u32", "u32", "u32", "u32", "u32", "pointer", "buffer", "buffer"],
    result: "i32",
  },
  cuIpcGetMemHandle: { parameters: ["buffer", "u64"], result: "i32" },
  cuIpcOpenMemHandle_v2: { parameters: ["buffer", IPC_HANDLE, "u32"], result: "i32" },
  cuIpcCloseMemHandle: { parameters: ["u64"], result: "i32" },
  cuIpcGetEventHandle: { parameters: ["buffer", "pointer"], result: "i32" },
  cuIpcOpenEventHandle: { parameters: ["buffer", IPC_HANDLE], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound driver functions. */
export type CudaSymbols = Deno.DynamicLibrary<typeof CUDA_SYMBOLS>["symbols"];

let loaded: CudaSymbols | null = null;
let failure: string | null = null;

/** The library file the loader opens: `CHOIR_CUDA_PATH`, else `libcuda.so.1` from the loader's path. */
export function cudaLibraryName(): string {
  return readEnv().cudaPath ?? "libcuda.so.1";
}

/**
 * The driver symbols, opened on first use. Throws LibraryUnavailableError naming the library and the
 * reason (no driver installed, no `--allow-ffi`) when it cannot be opened; importing never throws.
 */
export function cudaSymbols(): CudaSymbols {
  if (loaded) return loaded;
  if (failure === null) {
    try {
      loaded = Deno.dlopen(cudaLibraryName(), CUDA_SYMBOLS).symbols;
      return loaded;
    } catch (e) {
      failure = e instanceof Error ? e.message : String(e);
    }
  }
  throw new LibraryUnavailableError(
    `the CUDA driver library ${cudaLibraryName()} could not be opened (${failure}); GPU tensors need an ` +
      `NVIDIA driver (libcuda.so.1, package nvidia-driver / libnvidia-compute) and --allow-ffi`,
    { op: "cuda" },
  );
}

/** Whether the driver library opens in this process (it does not initialise CUDA). */
export function cudaLibraryLoads(): boolean {
  try {
    cudaSymbols();
    return true;
  } catch {
    return false;
  }
}
