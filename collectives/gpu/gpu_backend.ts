/**
 * @module
 * The GPU backend's door on a group: runs a collective on GpuTensors through the GPU route
 * (`gpu_route.ts`: CUDA IPC on one host, else staged through pinned host memory), which loads on
 * first GPU use. Until it has, the call is held in the group's op queue, and so is every call made
 * after it, so all start, take their sequence numbers and queue in the order they were called. The
 * route stages through the group's host collectives ({@link HostGroup}), never its public API.
 */

import type { OpQueue } from "../op_queue.ts";
import { Work } from "../work.ts";
import { type GpuRouteModule, gpuRouteNow, waitGpuRoute } from "./gpu_lazy.ts";
import type { HostGroup } from "./gpu_route.ts";

/** The GPU side of one group (see the module doc). */
export class GpuBackend {
  readonly #queue: OpQueue;
  readonly #host: () => HostGroup;

  /** @param queue the group's op queue. @param host the group's host collectives, made on first use. */
  constructor(queue: OpQueue, host: () => HostGroup) {
    this.#queue = queue;
    this.#host = host;
  }

  /** Runs `run` with the GPU route and the group's host collectives, in the group's call order. */
  run(
    name: string,
    opts: { async?: boolean },
    run: (route: GpuRouteModule, g: HostGroup) => Promise<void>,
  ): Promise<void> | Work {
    const q = this.#queue;
    const route = gpuRouteNow();
    if (route && q.open) return q.issue(name, opts, () => run(route, this.#host()));
    const wait = waitGpuRoute();
    let loaded: GpuRouteModule | null = null;
    const ready = wait.route.then((r) => void (loaded = r), (e) => {
      wait.done();
      throw e;
    });
    const p = q.hold(() => {
      wait.done();
      return run(loaded!, this.#host());
    }, ready);
    return opts.async === true ? new Work(p, name, q.rank) : p;
  }
}
