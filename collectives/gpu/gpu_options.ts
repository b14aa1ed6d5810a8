/**
 * @module
 * The options and constants of collectives on GpuTensors, apart from the code that moves them, so that
 * a CPU-only program loads none of it: the GPU route (`gpu_route.ts`) loads on first GPU use.
 */

/** How a collective moves a GpuTensor (the `gpu` field of the collective options). */
export interface GpuOptions {
  /**
   * `ipc`: ranks on one host reduce in device memory through CUDA IPC (allReduce only); `staged`:
   * through pinned host memory over the group's transport; `auto` (default): IPC for allReduce of
   * 1 MiB or more on a same-host group with a kernel for the op and dtype, else staged.
   */
  path?: "auto" | "ipc" | "staged";
  /** Bytes per staged chunk (default 4 MiB). */
  chunkBytes?: number;
  /**
   * IPC: keep peers' allocations mapped after the call (faster for buffers reused every step, such as
   * DDP gradients). Every rank must then keep those tensors alive until `releaseIpcMappings()`.
   */
  keepMapped?: boolean;
}

/** Default bytes per staged chunk. */
export const GPU_CHUNK_BYTES = 4 << 20;

/** Smallest allReduce that `gpu.path: "auto"` sends through IPC (below it, staging is cheaper). */
export const IPC_MIN_BYTES = 1 << 20;
