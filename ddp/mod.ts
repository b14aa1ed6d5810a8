/**
 * @module
 * Data-parallel training on top of the collectives: {@link DistributedDataParallel} (gradient
 * buckets averaged while backward runs, noSync accumulation, join for uneven data, unused
 * parameters, communication hooks: allreduce, fp16/bf16 compression, PowerSGD, and wrappers to stack
 * them), {@link DistributedSampler}, fault-tolerant training ({@link FtManager}: survivors of a lost
 * replica go on in place, replacements get the state from a live peer), and the {@link Model} interface
 * DDP works with. The launcher lives
 * in `@choir/choir/launch` (launch/); this entry still re-exports `launch()` and its types so that
 * programs importing them from here keep working — new code imports them from `@choir/choir/launch`.
 *
 * @example
 * ```ts ignore
 * import { initProcessGroup } from "@choir/choir";
 * import { DistributedDataParallel, DistributedSampler } from "@choir/choir/ddp";
 * const pg = await initProcessGroup();
 * const ddp = await DistributedDataParallel.create(model, pg); // model implements Model
 * const sampler = new DistributedSampler(dataset.length, { numReplicas: pg.size, rank: pg.rank });
 * for (let epoch = 0; epoch < 3; epoch++) {
 *   sampler.setEpoch(epoch);
 *   for (const batch of batchesOf(sampler.indices(), 32)) {
 *     ddp.zeroGrad();
 *     await model.backwardAsync(model.forward(batch)); // reports each final gradient to DDP
 *     await ddp.finishBackward(); // gradients are now averaged over the ranks
 *     optimizer.step();
 *   }
 * }
 * await ddp.join();
 * ```
 *
 * @example
 * ```ts
 * import { launch } from "@choir/choir/launch";
 * const res = await launch({ program: "train.ts", nprocPerNode: 2 });
 * console.log(res.code);
 * ```
 */

// Kept for programs that import the launcher from here (it moved to launch/, the layer above): the one
// place ddp/ names launch/, a re-export only; nothing in ddp/ uses it, and launch/ never imports ddp/.
export {
  type Failure,
  launch,
  type LaunchOptions,
  type LaunchResult,
  type OutputStream,
  type RankExit,
} from "../launch/mod.ts";
export type { ChoirEnv } from "../config.ts";
export type { SchedulerKind } from "../schedulers.ts";

export type {
  Buffer,
  GpuBuffer,
  GpuGradReadyHook,
  GpuModel,
  GpuParameter,
  GradReadyHook,
  Model,
  Parameter,
  ParamTensor,
} from "./model.ts";
export {
  type DdpStats,
  DistributedDataParallel,
  type DistributedDataParallelOptions,
} from "./distributed.ts";
export { DistributedSampler, type DistributedSamplerOptions } from "./sampler.ts";
export { FtManager, type FtManagerOptions, type StepContext, type StepReport } from "./ft/manager.ts";
export { shareState, type StatefulOptimizer, type TrainingState } from "./ft/state_transfer.ts";
export type { OptimizerState } from "./nn/optim.ts";
export type {
  Announcement,
  Decision,
  Quorum,
  ReplicaGroup,
  ReplicaGroupOptions,
} from "../collectives/mod.ts";
export { type ChromeTraceEvent, Timeline, type TimelineSpan } from "./timeline.ts";
export type { GradDType } from "./buckets.ts";
export type { CommHook, GradBucket, HookGroup, HookReduceOp } from "./hooks/types.ts";
export { allreduceHook } from "./hooks/default.ts";
export { bf16CompressHook, compressWrapper, fp16CompressHook, type HalfFormat } from "./hooks/compress.ts";
export { powerSGDHook, type PowerSGDOptions, PowerSGDState } from "./hooks/powersgd.ts";
export type { GpuTensor } from "../gpu/tensor.ts";
export type { DevicePtr } from "../gpu/cuda.ts";
export type { CpuTensor, DType } from "../dtype.ts";
