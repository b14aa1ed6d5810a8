/**
 * @module
 * choir: collective communication for Deno. Ranks in separate processes join a job, then run
 * allReduce, broadcast, reduce, allGather, reduceScatter, gather, scatter, allToAll, barrier, send/recv
 * and object collectives on typed arrays and values, in subgroups too, like torch.distributed.
 *
 * @example
 * ```ts
 * // deno task launch --nproc-per-node 4 examples/allreduce.ts
 * import { initProcessGroup, ReduceOp } from "@choir/choir";
 * const pg = await initProcessGroup(); // env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
 * const x = new Float32Array(1 << 20).fill(pg.rank);
 * await pg.allReduce(x, { op: ReduceOp.SUM }); // x[i] === sum of ranks on every rank
 * await pg.broadcast(x, { root: 0 });
 * await pg.barrier();
 * await pg.destroy();
 * ```
 */

export * from "./collectives/mod.ts";
export * from "./errors.ts";
export { type ChoirEnv, DEFAULT_TIMEOUT_MS, readEnv } from "./config.ts";
export type { SchedulerKind } from "./schedulers.ts";
export type {
  Arrival,
  ArrivalResult,
  Gathered,
  Gathering,
  Store,
  WatchOptions,
} from "./transports/store/mod.ts";
