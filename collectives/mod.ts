/**
 * @module
 * Collectives: the {@link ProcessGroup} with its collective, object, point-to-point and subgroup
 * operations, {@link Work} handles, `initProcessGroup()`, the fault-tolerant {@link ReplicaGroup}, data
 * types and reduce ops, and the reduce kernels.
 *
 * @example
 * ```ts
 * import { initProcessGroup, ReduceOp } from "@choir/choir/collectives";
 * const pg = await initProcessGroup();
 * const x = new Float32Array(4).fill(pg.rank);
 * await pg.allReduce(x, { op: ReduceOp.MAX });
 * await pg.destroy();
 * ```
 */

export {
  type AllToAllOptions,
  type AsyncOptions,
  type BarrierOptions,
  type ExplainOptions,
  type GroupStatus,
  type NewGroupOptions,
  type ObjectOptions,
  type OpOptions,
  type P2POp,
  type P2POptions,
  type ReduceOptions,
  type RootObjectOptions,
  type RootOptions,
  type SubgroupSpec,
  type SyncOptions,
} from "./options.ts";
export { ProcessGroup, type ProcessGroupOptions, type SubgroupOpener } from "./process_group.ts";
export { Work } from "./work.ts";
export { type InitOptions, initProcessGroup } from "./init.ts";
export type { CpuBind } from "../transports/cpu_bind.ts";
export { type Decision, type Quorum, ReplicaGroup, type ReplicaGroupOptions } from "./ft/replica_group.ts";
export type { Announcement } from "./ft/quorum_store.ts";
export { reportResult, workerData, type WorkerGroupOptions, workerProcessGroup } from "./worker_group.ts";
export { spawnWorkers, type SpawnWorkersOptions, WorkerGroup } from "../transports/worker/spawn.ts";
export { isWorkerRank } from "../transports/worker/rank.ts";
export {
  type CpuTensor,
  type DType,
  dtypeOf,
  DTYPES,
  dtypeSize,
  isFloat,
  opSupports,
  REDUCE_OPS,
  ReduceOp,
} from "../dtype.ts";
export {
  type Algorithm,
  ALGORITHMS,
  type Candidate,
  type Explanation,
  isAlgorithm,
  plan,
  planGather,
  type PlanInput,
  type PlanOp,
} from "./plan/plan.ts";
export * from "./kernels/mod.ts";
export {
  LATENCY_BUCKETS,
  Metrics,
  type MetricsOptions,
  type OpCounters,
  prometheusText,
} from "./diagnostics/metrics.ts";
export {
  type EntryState,
  type FlightEntry,
  FlightRecorder,
  type FlightRecorderOptions,
  type FlightRecorderSnapshot,
  type OpDescriptor,
} from "./diagnostics/flight_recorder.ts";
export {
  analyzeHang,
  type AnalyzeOptions,
  type BehindRank,
  type HangReport,
  type MismatchedRank,
  type RankStanding,
  type Stall,
} from "./diagnostics/hang_report.ts";
export {
  startStatusServer,
  type StatusServer,
  type StatusServerOptions,
} from "./diagnostics/status_server.ts";
export { GPU_CHUNK_BYTES, type GpuOptions, IPC_MIN_BYTES } from "./gpu/gpu_options.ts";
export { releaseIpcMappings, releaseStagingBuffers } from "./gpu/gpu_lazy.ts";
export type { ChoirEnv } from "../config.ts";
export type { GpuTensor } from "../gpu/tensor.ts";
export type { Store } from "../transports/store/store.ts";
export type { HttpLimits } from "../transports/http/server.ts";
export type { SchedulerKind } from "../schedulers.ts";
export type { DevicePtr } from "../gpu/cuda.ts";
