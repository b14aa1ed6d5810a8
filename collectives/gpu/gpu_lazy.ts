/**
 * @module
 * Loads the GPU route (`gpu_route.ts`, and with it `gpu/`, the IPC kernels and their PTX) on first GPU
 * use, so a CPU-only program never does; and the two release calls, which have nothing to free before.
 * ProcessGroup keeps each GPU call's place in its order while the route loads; this file only loads.
 */

import type * as GpuRoute from "./gpu_route.ts";

/** The GPU route module. */
export type GpuRouteModule = typeof GpuRoute;

let loading: Promise<GpuRouteModule> | null = null;
let loaded: GpuRouteModule | null = null;
/** Calls waiting for the route: while any is, later ones wait too, so all run in call order. */
let waiting = 0;

/**
 * The GPU route if it is loaded and no earlier call still waits for it (use it at once), else null
 * (then go through {@link waitGpuRoute}).
 */
export function gpuRouteNow(): GpuRouteModule | null {
  return waiting === 0 ? loaded : null;
}

/**
 * Loads the GPU route (once) and resolves with it. The caller counts as waiting (so {@link gpuRouteNow}
 * answers null, and no later GPU call overtakes it) until it calls `done`, just before it uses the
 * route. A failed load rejects (call `done` then too), and the next call tries again.
 */
export function waitGpuRoute(): { route: Promise<GpuRouteModule>; done: () => void } {
  loading ??= import("./gpu_route.ts").then((m) => loaded = m, (e) => {
    loading = null;
    throw e;
  });
  waiting++;
  let counted = true;
  return {
    route: loading,
    done: () => {
      if (counted) waiting--;
      counted = false;
    },
  };
}

/** Frees the pinned staging buffers kept for reuse. */
export function releaseStagingBuffers(): void {
  loaded?.releaseStagingBuffers();
}

/** Unmaps every peer allocation kept mapped by `keepMapped` calls. Call it on every rank before peers free. */
export function releaseIpcMappings(): void {
  loaded?.releaseIpcMappings();
}
