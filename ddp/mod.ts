/**
 * @module
 * Data-parallel training on top of the collectives. This release ships the launcher (`launch()`,
 * also `deno task launch`); DistributedDataParallel and DistributedSampler come next.
 *
 * @example
 * ```ts
 * import { launch } from "@choir/choir/ddp";
 * const res = await launch({ program: "train.ts", nprocPerNode: 2 });
 * console.log(res.code);
 * ```
 */

export { launch, type LaunchOptions, type LaunchResult, type RankExit } from "./launch.ts";
export type { OutputStream } from "./launch_output.ts";
