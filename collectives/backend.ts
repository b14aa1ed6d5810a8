/**
 * @module
 * The interface every backend that runs host-tensor collectives implements: the channel algorithms over
 * any transport (`channels/channel_backend.ts`) and the same-host shared arena
 * (`arena/arena_backend.ts`). ProcessGroup checks the arguments, makes the call record, asks the router
 * and hands the call to one backend; the backend queues it on the group's op queue and runs it.
 * GpuTensors go to the GPU backend (`gpu/gpu_backend.ts`), which stages them through these.
 */

import type { CpuTensor } from "../dtype.ts";
import type { Call } from "./comm.ts";
import type { Route } from "./route.ts";

/** One call as the op queue orders it. */
export interface Queued {
  /** The call record (name, kind, sequence number, dtype, count, root, reduce op). */
  readonly call: Call;
  /** Its timeout, ms. */
  readonly timeoutMs: number;
  /** It keeps its place in the order but starts once this resolves (a staged GPU chunk is on the host). */
  readonly after?: Promise<void>;
}

/** One routed call as a backend runs it. */
export interface OpRun extends Queued {
  /** Where and how it runs (the router's answer). */
  readonly route: Route;
  /** PREMUL_SUM's factor. */
  readonly factor?: number;
}

/**
 * What runs the collectives both backends have. Every method queues the call and resolves once it is
 * over on this rank; reductions apply PREMUL_SUM and AVG (`reduce_steps.ts`).
 */
export interface Backend {
  /** allReduce of `tensor` in place. */
  allReduce(r: OpRun, tensor: CpuTensor): Promise<void>;
  /** broadcast of `tensor` from `call.root`. */
  broadcast(r: OpRun, tensor: CpuTensor): Promise<void>;
  /** reduce of `tensor` into the root's; the others' tensors stay as they were. */
  reduce(r: OpRun, tensor: CpuTensor): Promise<void>;
  /** allGather of every rank's `input` into `output`. */
  allGather(r: OpRun, output: CpuTensor, input: CpuTensor): Promise<void>;
  /** allGather into a list of per-rank tensors (the same collective as allGather). */
  allGatherList(r: OpRun, outputs: readonly CpuTensor[], input: CpuTensor): Promise<void>;
  /**
   * reduceScatter into `output`: `whole` is the input when it is one tensor (read only), `fill` makes a
   * private copy of the whole input.
   */
  reduceScatter(r: OpRun, output: CpuTensor, whole: CpuTensor | null, fill: () => CpuTensor): Promise<void>;
  /** barrier. */
  barrier(r: OpRun): Promise<void>;
}
