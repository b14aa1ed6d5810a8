/**
 * @module
 * `choir launch` (torchrun-like): the node agent and its CLI. Standalone it serves the store and runs N
 * ranks; across nodes the agents meet in a store (`--rdzv-endpoint`), agree on MIN..MAX nodes, give
 * each worker torchrun's env (RANK, LOCAL_RANK, GROUP_RANK, WORLD_SIZE, ..., TORCHELASTIC_RESTART_COUNT),
 * tee output to `[rank N] ` lines and `--log-dir` files, and restart failed groups (`--max-restarts`), or
 * only the failed worker for fault-tolerant programs (`--restart-failed`, see `FtManager`).
 * Workers resume from an {@link ElasticState}; `initProcessGroup` also runs under SLURM, mpirun, PMI and
 * Kubernetes Indexed Jobs with no launcher (config.ts reads their env). Entry `@choir/choir/launch`,
 * which is also the command line: `deno run -A jsr:@choir/choir/launch --nproc-per-node 2 train.ts`
 * (in this repository `deno task launch`).
 *
 * @example
 * ```ts ignore
 * import { launch } from "@choir/choir/launch";
 * const res = await launch({ program: "train.ts", nprocPerNode: 2, maxRestarts: 1 });
 * Deno.exit(res.code);
 * ```
 *
 * @example Resuming training after a restart
 * ```ts ignore
 * import { initProcessGroup } from "@choir/choir";
 * import { ElasticState } from "@choir/choir/launch";
 * const pg = await initProcessGroup();
 * const state = await ElasticState.open({ tensors: { w: weights }, values: { step: 0 } });
 * await state.restore(); // the last commit, if a previous attempt made one
 * while ((state.values.step as number) < 1000) {
 *   await trainStep(pg);
 *   state.values.step = (state.values.step as number) + 1;
 *   await state.commit();
 * }
 * ```
 */

export type { ChoirEnv } from "../config.ts";
export type { SchedulerKind } from "../schedulers.ts";
export type { Store } from "../transports/store/mod.ts";
export {
  ElasticState,
  type ElasticStateOptions,
  type ElasticTensor,
  type ElasticValues,
} from "./elastic/state.ts";
export type { Failure } from "./elastic/root_cause.ts";
export type { RankExit } from "./elastic/local_workers.ts";
export type { OutputStream } from "./output.ts";
export {
  GLIBC_TUNABLES_DEFAULT,
  launch,
  type LaunchOptions,
  type LaunchResult,
  main,
  parseEndpoint,
} from "./launch.ts";

import { main } from "./launch.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
