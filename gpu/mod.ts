/**
 * @module
 * GPU tensors through the CUDA driver API and cuBLAS, bound with Deno FFI (no native addon, no build
 * step: the PTX kernels ship as text and the driver compiles them). Importing this module never fails;
 * {@link cudaAvailable} says whether a driver and a device are there, and GPU calls without one throw
 * LibraryUnavailableError naming what is missing. Needs `--allow-ffi` (and `--allow-read` to find
 * cuBLAS). Collectives accept {@link GpuTensor} (staged through pinned host memory, or CUDA IPC when
 * the ranks share a host's GPUs).
 *
 * @example
 * ```ts
 * import { cudaAvailable, GpuTensor, matmul } from "@choir/choir/gpu";
 * if (cudaAvailable()) {
 *   using a = GpuTensor.fromHost(new Float32Array([1, 2, 3, 4]), { shape: [2, 2] });
 *   using c = matmul(a, a);
 *   console.log(c.toHost()); // Float32Array [7, 10, 15, 22]
 * }
 * ```
 */

export {
  addressRange,
  check,
  copyDtoD,
  copyDtoH,
  copyDtoHAsync,
  copyHtoD,
  copyHtoDAsync,
  cudaAvailable,
  CudaEvent,
  CudaFunction,
  CudaModule,
  deviceCount,
  type DeviceInfo,
  deviceInfo,
  type DevicePtr,
  driverVersion,
  EventFlags,
  HostBuffer,
  IPC_HANDLE_SIZE,
  ipcCloseMemHandle,
  ipcGetMemHandle,
  ipcOpenEventHandle,
  ipcOpenMemHandle,
  type KernelArg,
  type LaunchConfig,
  memAlloc,
  memFree,
  memoryInfo,
  memset8,
  releaseDevices,
  Stream,
  synchronize,
  useDevice,
} from "./cuda.ts";
export { cudaLibraryName } from "./cuda_lib.ts";
export {
  Cublas,
  cublas,
  cublasAvailable,
  cublasCandidates,
  cublasLibrary,
  cublasStatusName,
  type GemmDType,
  type Transpose,
} from "./cublas.ts";
export { GpuTensor, type GpuTensorOptions, isGpuTensor, matmul, type MatmulOptions } from "./tensor.ts";
export {
  hasReduceKernel,
  KERNEL_DTYPES,
  type KernelDType,
  type KernelOp,
  launchNn,
  launchReduce,
  MAX_KERNEL_PTRS,
  reduceKernelName,
  type ReduceLaunch,
} from "./kernels.ts";
export type { CpuTensor, DType } from "../dtype.ts";
