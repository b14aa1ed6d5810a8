/**
 * @module
 * Collectives: the {@link ProcessGroup} with its collective and point-to-point operations,
 * `initProcessGroup()`, data types and reduce ops, and the reduce kernels.
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
  type ExplainOptions,
  type OpOptions,
  type P2POptions,
  ProcessGroup,
  type ProcessGroupOptions,
  type ReduceOptions,
  type RootOptions,
} from "./process_group.ts";
export { type InitOptions, initProcessGroup } from "./init.ts";
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
} from "./dtype.ts";
export {
  type Algorithm,
  ALGORITHMS,
  type Candidate,
  type Explanation,
  isAlgorithm,
  plan,
  type PlanInput,
  type PlanOp,
} from "./plan.ts";
export * from "./reduce/mod.ts";
