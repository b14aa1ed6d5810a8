/**
 * @module
 * The root cause of a failed round: the first worker that failed on its own (published by its agent in
 * the store, first writer wins), with its node, exit code and the tail of its output, and its wording.
 */

import { describeExit, type RankExit } from "./local_workers.ts";

/** The first failure of a round, as its node's agent saw it. */
export interface Failure extends RankExit {
  /** The rendezvous round it happened in. */
  round: number;
  /** The GROUP_RANK of its node. */
  groupRank: number;
  /** The address of its node. */
  addr: string;
  /** The last lines it printed. */
  tail: string[];
  /** Its log file under `--log-dir` (on its node), if any. */
  logFile?: string;
}

/**
 * One line ("rank 3 (node 1 at 10.0.0.2, round 0) was killed by SIGKILL (exit code 137)"), and with
 * `withTail` the last lines of the rank's output below it.
 */
export function failureSummary(f: Failure, withTail = true): string {
  const head = `rank ${f.rank} ${
    describeExit(f)
  } (first failure; node ${f.groupRank} at ${f.addr}, round ${f.round})`;
  if (!withTail) return head;
  const where = f.logFile !== undefined ? ` (full log: ${f.logFile})` : "";
  const tail = f.tail.length === 0
    ? `\n  rank ${f.rank} printed nothing`
    : `\n  last ${f.tail.length} line(s) of rank ${f.rank}${where}:\n` +
      f.tail.map((l) => `    | ${l}`).join("\n");
  return head + tail;
}
