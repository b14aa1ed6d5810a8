/**
 * @module
 * The elastic agent of one node: rendezvous, start the local workers, watch them and the other nodes
 * (failures, late joiners, nodes that stop heartbeating), and on a failure stop, re-rendezvous and
 * restart up to `maxRestarts` times. Every window runs on a monotonic clock (liveness.ts); a store that
 * was replaced under the job is a StoreError (endpoint.ts). Running the store and parsing the command
 * line is ../launch.ts's job.
 */

import type { Store } from "../../transports/store/mod.ts";
import { AbortedError, StoreTimeoutError } from "../../errors.ts";
import { splitLines } from "../output.ts";
import { joinRound, type NodeInfo, roundKey, waitingNodes, type World } from "./rendezvous.ts";
import { type Clock, HeartbeatWatch, monotonicClock } from "./liveness.ts";
import { RankLogs, roundLogDir } from "./rank_logs.ts";
import { LocalWorkers, type RankExit } from "./local_workers.ts";
import { type Failure, failureSummary } from "./root_cause.ts";

/** Everything the agent needs; ../launch.ts fills it from options and the command line. */
export interface AgentOptions {
  /** The program and how to run it. */
  program: string;
  /** Its arguments. */
  args: string[];
  /** Flags of `deno run` for .ts/.js programs. */
  denoFlags: string[];
  /** Workers on this node. */
  nprocPerNode: number;
  /** Minimum and maximum number of nodes. */
  minNodes: number;
  /** Maximum number of nodes. */
  maxNodes: number;
  /** `--node-rank`, if given (orders nodes in the rendezvous). */
  nodeRank?: number;
  /** The run id (`--rdzv-id`). */
  runId: string;
  /** The rendezvous store of this run (prefixed). */
  store: Store;
  /** The store workers reach (MASTER_ADDR / MASTER_PORT). */
  master: { addr: string; port: number };
  /** Key prefix under which round R's workers meet: `${workerPrefix}r${R}/`. */
  workerPrefix: string;
  /** The address other nodes see this one at (messages only). */
  addr: string;
  /** The job token. */
  token: string;
  /** Env every worker gets (before the contract's variables). */
  baseEnv: Record<string, string>;
  /** Failure restarts allowed. */
  maxRestarts: number;
  /** Failed workers restarted alone, the others going on (`--restart-failed`; default 0). */
  restartFailed?: number;
  /** Period of the monitor loop, in ms. */
  monitorMs: number;
  /** Rendezvous: last-call window, in ms. */
  lastCallMs: number;
  /** Rendezvous: how long to wait for MIN nodes, in ms. */
  joinTimeoutMs: number;
  /** A node whose heartbeat did not move for this long has left, in ms. */
  heartbeatTimeoutMs: number;
  /** After SIGTERM, how long workers get before SIGKILL, in ms. */
  graceMs: number;
  /** `--log-dir`, if any. */
  logDir?: string;
  /** Receives each line of each worker (default: prefixed to our stdout/stderr). */
  onOutput?: (rank: number, stream: "stdout" | "stderr", line: string) => void;
  /** Receives the agent's messages. */
  log: (message: string) => void;
  /** Aborting it stops the workers and ends the agent (code 128 + signal). */
  signal: AbortSignal;
  /** Which signal aborted `signal` (for the exit code), read after the abort. */
  stopSignal: () => Deno.Signal;
  /** Called after each round's workers have all exited (e.g. to sweep shared memory). */
  afterRound?: () => Promise<void>;
  /**
   * Called at every poll of the rendezvous and the monitor; what it throws (a StoreError: the store was
   * replaced) stops the workers and ends the agent.
   */
  checkStore?: () => Promise<void>;
  /** The store's instance id, given to workers as CHOIR_STORE_INSTANCE (ElasticState checks it). */
  storeInstance?: string;
  /** The clock of every window and heartbeat (default: monotonic). */
  clock?: Clock;
}

/** How the agent ended. */
export interface AgentResult {
  /** 0 on success; the root cause's exit code (>= 1) on failure; 128 + signal when stopped. */
  code: number;
  /** The last round's local workers, in local-rank order. */
  ranks: RankExit[];
  /** The first failure of the last failed round (the root cause), if the job failed. */
  failed?: Failure;
  /** Failure restarts made. */
  restarts: number;
  /** Rendezvous rounds run (restarts plus membership changes plus one). */
  rounds: number;
  /** Failed workers restarted alone (`restartFailed`), over all rounds. */
  workerRestarts: number;
  /** The last world. */
  world?: World;
  /** This node's GROUP_RANK in the last world. */
  groupRank?: number;
}

type Outcome =
  | { kind: "succeeded" }
  | { kind: "failed"; failure: Failure }
  | { kind: "membership"; why: string }
  | { kind: "stopped" };

const dec = new TextDecoder();

/** Runs rounds until the job succeeds, fails beyond `maxRestarts`, or `signal` aborts. */
export async function runAgent(o: AgentOptions): Promise<AgentResult> {
  const me: NodeInfo = {
    id: `${o.addr}#${crypto.randomUUID().slice(0, 8)}`,
    addr: o.addr,
    nproc: o.nprocPerNode,
    nodeRank: o.nodeRank,
  };
  let restarts = 0;
  let rounds = 0;
  let workerRestarts = 0;
  let fromRound: number | undefined;
  for (;;) {
    let joined;
    try {
      joined = await joinRound({
        store: o.store,
        me,
        min: o.minNodes,
        max: o.maxNodes,
        fromRound,
        lastCallMs: o.lastCallMs,
        joinTimeoutMs: o.joinTimeoutMs,
        heartbeatTimeoutMs: o.heartbeatTimeoutMs,
        runId: o.runId,
        log: o.log,
        signal: o.signal,
        clock: o.clock,
        check: o.checkStore,
      });
    } catch (err) {
      if (err instanceof AbortedError) {
        return { code: exitCodeOf(o.stopSignal()), ranks: [], restarts, rounds, workerRestarts };
      }
      throw err;
    }
    const { world, groupRank } = joined;
    rounds++;
    const round = world.round;
    if (o.signal.aborted) {
      return {
        code: exitCodeOf(o.stopSignal()),
        ranks: [],
        restarts,
        rounds,
        workerRestarts,
        world,
        groupRank,
      };
    }
    const offset = world.nodes.slice(0, groupRank).reduce((s, n) => s + n.nproc, 0);
    const worldSize = world.nodes.reduce((s, n) => s + n.nproc, 0);
    const ranks = Array.from({ length: o.nprocPerNode }, (_, l) => offset + l);
    if (world.nodes.length > 1 || rounds > 1) {
      const mine = `ranks ${ranks[0]}..${ranks[ranks.length - 1]}`;
      o.log(
        `round ${round}: ${world.nodes.length} node(s), world size ${worldSize}; this node is group rank ` +
          `${groupRank} (${mine}), restart ${restarts} of ${o.maxRestarts}`,
      );
    }
    const logDir = o.logDir === undefined ? undefined : await roundLogDir(o.logDir, o.runId, round);
    if (logDir !== undefined) o.log(`rank logs of run ${o.runId}, round ${round}: ${logDir}`);
    const logs = new RankLogs(logDir, o.onOutput);
    const envOf = (local: number): Record<string, string> => ({
      ...o.baseEnv,
      RANK: String(offset + local),
      LOCAL_RANK: String(local),
      GROUP_RANK: String(groupRank),
      ROLE_RANK: String(offset + local),
      WORLD_SIZE: String(worldSize),
      LOCAL_WORLD_SIZE: String(o.nprocPerNode),
      GROUP_WORLD_SIZE: String(world.nodes.length),
      ROLE_WORLD_SIZE: String(worldSize),
      MASTER_ADDR: o.master.addr,
      MASTER_PORT: String(o.master.port),
      CHOIR_TOKEN: o.token,
      CHOIR_STORE_EXTERNAL: "1",
      CHOIR_STORE_PREFIX: `${o.workerPrefix}r${round}/`,
      CHOIR_JOB_ID: o.runId,
      TORCHELASTIC_RUN_ID: o.runId,
      TORCHELASTIC_RESTART_COUNT: String(restarts),
      TORCHELASTIC_MAX_RESTARTS: String(o.maxRestarts),
      ...(o.storeInstance === undefined ? {} : { CHOIR_STORE_INSTANCE: o.storeInstance }),
    });
    const group = new LocalWorkers({
      program: o.program,
      args: o.args,
      denoFlags: o.denoFlags,
      ranks,
      envOf,
      graceMs: o.graceMs,
      onLines: (rank, stream, lines) => logs.lines(rank, stream, lines),
      log: o.log,
      splitLines,
      restartFailed: o.restartFailed,
    });
    let outcome: Outcome | undefined;
    let error: unknown;
    try {
      outcome = await monitor(o, world, groupRank, group, logs);
    } catch (err) {
      error = err; // e.g. the store went away: still stop and reap the workers first
    }
    group.stop(o.signal.aborted ? o.stopSignal() : "SIGTERM");
    const result = await group.done;
    workerRestarts += result.restarted;
    logs.close();
    await o.afterRound?.();
    if (outcome === undefined) throw error;
    switch (outcome.kind) {
      case "succeeded":
        return { code: 0, ranks: result.ranks, restarts, rounds, workerRestarts, world, groupRank };
      case "stopped":
        return {
          code: exitCodeOf(o.stopSignal()),
          ranks: result.ranks,
          restarts,
          rounds,
          workerRestarts,
          world,
          groupRank,
        };
      case "membership":
        o.log(`${outcome.why}; starting a new round (not counted as a restart)`);
        fromRound = round + 1;
        continue;
      case "failed": {
        if (restarts < o.maxRestarts) {
          restarts++;
          const why = failureSummary(outcome.failure, false);
          o.log(`${why}; restarting the workers (restart ${restarts} of ${o.maxRestarts})`);
          fromRound = round + 1;
          continue;
        }
        return {
          code: Math.max(1, outcome.failure.code),
          ranks: result.ranks,
          failed: outcome.failure,
          restarts,
          rounds,
          workerRestarts,
          world,
          groupRank,
        };
      }
    }
  }
}

function exitCodeOf(sig: Deno.Signal): number {
  return 128 + (sig === "SIGINT" ? 2 : sig === "SIGKILL" ? 9 : 15);
}

/** Watches one round until it ends one way or another. */
async function monitor(
  o: AgentOptions,
  world: World,
  groupRank: number,
  group: LocalWorkers,
  logs: RankLogs,
): Promise<Outcome> {
  const round = world.round;
  const n = world.nodes.length;
  const key = (what: string) => roundKey(round, what);
  const failureKey = key("failure");
  const doneKeys = Array.from({ length: n }, (_, g) => key(`done/${g}`));
  const leftKeys = Array.from({ length: n }, (_, g) => key(`left/${g}`));
  const beats = new HeartbeatWatch(o.heartbeatTimeoutMs, o.clock ?? monotonicClock);
  let localDone = false;
  let wake: () => void = () => {};

  // Local events: the first failure is published at once (first publisher wins the root cause).
  group.firstFailure.then(async (exit) => {
    const failure: Failure = {
      ...exit,
      round,
      groupRank,
      addr: world.nodes[groupRank].addr,
      tail: logs.tail(exit.rank),
      logFile: logs.pathOf(exit.rank),
    };
    try {
      await o.store.compareSet(failureKey, "", JSON.stringify(failure));
    } catch (err) {
      o.log(`could not publish the failure of rank ${exit.rank}: ${(err as Error).message}`);
    }
    wake();
  });
  group.done.then(async (r) => {
    if (r.failed !== undefined || r.stoppedBy !== undefined) return;
    localDone = true;
    try {
      await o.store.set(doneKeys[groupRank], "1");
    } catch { /* the monitor notices a dead store */ }
    wake();
  });
  const onAbort = () => wake();
  o.signal.addEventListener("abort", onAbort);
  try {
    for (;;) {
      if (o.signal.aborted) {
        try {
          await o.store.set(leftKeys[groupRank], "1");
        } catch { /* store gone */ }
        return { kind: "stopped" };
      }
      await o.checkStore?.();
      await o.store.add(key(`hb/${groupRank}`), 1);
      if (await o.store.check([failureKey])) {
        const failure = JSON.parse(dec.decode(await o.store.get(failureKey))) as Failure;
        return { kind: "failed", failure };
      }
      if (localDone && (await o.store.check(doneKeys))) return { kind: "succeeded" };
      const waiting = await waitingNodes(o.store, round);
      if (waiting > 0) return { kind: "membership", why: `${waiting} node(s) asked to join` };
      for (let g = 0; g < n; g++) {
        if (g === groupRank) continue;
        if (await o.store.check([leftKeys[g]])) {
          return { kind: "membership", why: `node ${g} (${world.nodes[g].addr}) left` };
        }
        if (await o.store.check([doneKeys[g]])) continue;
        const silent = beats.observe(g, await o.store.add(key(`hb/${g}`), 0));
        if (silent !== undefined) {
          return {
            kind: "membership",
            why: `node ${g} (${world.nodes[g].addr}) sent no heartbeat for ${Math.round(silent)} ms`,
          };
        }
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, o.monitorMs);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  } finally {
    o.signal.removeEventListener("abort", onAbort);
  }
}

/** Waits until every node of `world` marked its exit (the host keeps the store up until then). */
export async function waitForExits(store: Store, world: World, timeoutMs: number): Promise<void> {
  const keys = world.nodes.map((_, g) => roundKey(world.round, `exited/${g}`));
  try {
    await store.wait(keys, timeoutMs);
  } catch (err) {
    if (!(err instanceof StoreTimeoutError)) throw err;
  }
}

/** Marks this node's exit from `world`. */
export async function markExit(store: Store, world: World, groupRank: number): Promise<void> {
  await store.set(roundKey(world.round, `exited/${groupRank}`), "1");
}
