/**
 * @module
 * The launcher: {@link launch} runs this node's ranks of a job (standalone, or meeting other node
 * agents in a store) and {@link main} is its command line. Arguments are args.ts's, output lines
 * output.ts's; rounds, restarts and the workers themselves are the elastic agent's (elastic/), and what
 * the agents agree on through the endpoint (store instance, default run id) elastic/endpoint.ts's.
 */

import { type ChoirEnv, readEnv } from "../config.ts";
import {
  AbortedError,
  AuthError,
  InvalidArgumentError,
  PermissionError,
  RendezvousError,
} from "../errors.ts";
import { sweepJobSegments } from "../transports/shm/sweep.ts";
import type { CpuBind } from "../transports/cpu_bind.ts";
import {
  PrefixStore,
  startStoreServer,
  type StoreServer,
  storeThreadFor,
  TcpStore,
} from "../transports/store/mod.ts";
import { generateToken } from "../transports/token.ts";
import { isLoopbackHost } from "../transports/public_token.ts";
import { parseLaunchArgs, USAGE } from "./args.ts";
import { type OutputStream, terminalWriters } from "./output.ts";
import { type AgentResult, markExit, runAgent, waitForExits } from "./elastic/agent.ts";
import {
  claimDefaultRunId,
  claimStoreInstance,
  releaseDefaultRunId,
  RunBeat,
  verifyStoreInstance,
} from "./elastic/endpoint.ts";
import { roundKey } from "./elastic/rendezvous.ts";
import { type Failure, failureSummary } from "./elastic/root_cause.ts";
import type { RankExit } from "./elastic/local_workers.ts";

/** Options of {@link launch}. */
export interface LaunchOptions {
  /** The program: a .ts/.js file runs under `deno run`, anything else is executed directly. */
  program: string;
  /** Arguments given to every rank's program. */
  args?: string[];
  /** Number of ranks to start on this node. */
  nprocPerNode: number;
  /** Fewest nodes the job runs with (`--nnodes MIN:MAX`; default 1). */
  minNodes?: number;
  /** Most nodes the job admits (default `minNodes`); one more is refused. */
  maxNodes?: number;
  /** `--node-rank`: nodes that give one get GROUP_RANKs in that order (default: order of arrival). */
  nodeRank?: number;
  /**
   * `--rdzv-endpoint HOST:PORT`: the store the node agents meet in and workers use (MASTER_ADDR /
   * MASTER_PORT). The agent that can bind it serves it; the others connect. Absent: standalone.
   */
  rdzvEndpoint?: string;
  /**
   * `--rdzv-id`: the run id (TORCHELASTIC_RUN_ID, CHOIR_JOB_ID). Default: a random one per launch;
   * across nodes the first agent of a launch creates it in the endpoint's store and the others read it
   * there (docs/cluster.md, "The run id").
   */
  rdzvId?: string;
  /** `--max-restarts`: how often a failed worker group is restarted (default 0). */
  maxRestarts?: number;
  /**
   * `--restart-failed`: how many times this node restarts a failed worker on its own, with the same env,
   * while the other workers and the store go on (default 0). For fault-tolerant programs (`FtManager`),
   * whose survivors continue and admit the replacement at a step boundary.
   */
  restartFailed?: number;
  /** `--monitor-interval`: how often the agent checks workers and nodes, in ms (default 100). */
  monitorIntervalMs?: number;
  /** `--log-dir`: also write each rank's output to `DIR/run-HASH/round_R/rank_N.log` (HASH: of the run id; 0600). */
  logDir?: string;
  /** Once MIN nodes joined, how long to wait for more before starting, in ms (default 3000; standalone 0). */
  lastCallMs?: number;
  /** How long to wait for MIN nodes (and for the endpoint), in ms (default 600000). */
  joinTimeoutMs?: number;
  /** A node whose heartbeat stops for this long has left, in ms (default 30000). */
  heartbeatTimeoutMs?: number;
  /** Standalone: address of the store server, given to ranks as MASTER_ADDR (default "127.0.0.1"). */
  masterAddr?: string;
  /** Standalone: port of the store server; 0 or absent picks a free one. */
  masterPort?: number;
  /**
   * The job's secret (CHOIR_TOKEN), handed to the workers through their environment (never a command
   * line). Default: CHOIR_TOKEN of this process; else standalone 32 random bytes; across nodes, where every
   * node must hold the same one, a token derived from the run id only when the endpoint is on loopback
   * (one host: it keeps launches apart but is no secret), otherwise an InvalidArgumentError.
   */
  token?: string;
  /** Extra environment variables for every rank. */
  env?: Record<string, string>;
  /**
   * `--bind-to`: `core` binds each rank's main thread to one CPU (the LOCAL_RANK-th this node may use,
   * modulo their number), as mpirun does by default; `none` leaves it to the kernel. Handed to the ranks
   * as CHOIR_CPU_BIND. Default: not set (the ranks read CHOIR_CPU_BIND from `env` or their environment,
   * else `none`, as torchrun places nothing).
   */
  bindTo?: CpuBind;
  /** Flags of `deno run` for .ts/.js programs (default `["-A"]`). */
  denoFlags?: string[];
  /** After SIGTERM, how long ranks get to exit before SIGKILL, in ms (default 5000). */
  graceMs?: number;
  /**
   * Receives each line of each rank's output (lines over 64 KiB cut and marked). Default: written
   * `[rank N] `-prefixed to our stdout/stderr in the background; when nobody reads them, rank output
   * beyond 4 MiB queued is dropped (and counted), never waited for.
   */
  onOutput?: (rank: number, stream: OutputStream, line: string) => void;
  /** Receives the launcher's own messages; default: queued for stderr as `launch: ...`. */
  log?: (message: string) => void;
  /** Forward SIGINT/SIGTERM received by this process to the ranks (the CLI does). */
  forwardSignals?: boolean;
  /** Aborting it stops every rank (SIGTERM, then SIGKILL after `graceMs`). */
  signal?: AbortSignal;
  /** This process's env, to keep a GLIBC_TUNABLES already set (default: `readEnv()`). */
  parentEnv?: ChoirEnv;
}

/** How the job ended on this node. */
export interface LaunchResult {
  /** 0 when every rank exited 0; else the root cause's code (>= 1), or 128 + a forwarded signal. */
  code: number;
  /** The exit of this node's ranks of the last round, in rank order. */
  ranks: RankExit[];
  /** The root cause: the first rank that failed on its own in the last round, when the job failed. */
  failed?: Failure;
  /** The port of the store (standalone: the server started here). */
  masterPort: number;
  /** Failure restarts made. */
  restarts: number;
  /** Rendezvous rounds run (1 + restarts + membership changes). */
  rounds: number;
  /** Failed workers restarted on their own (`restartFailed`). */
  workerRestarts: number;
}

/** Non-temporal copies for large memcpy (see design.md); set for ranks unless already set. */
export const GLIBC_TUNABLES_DEFAULT = "glibc.cpu.x86_non_temporal_threshold=0x100000";

/**
 * Runs this node's part of a job and resolves when it ends. Without `rdzvEndpoint` (standalone) it
 * starts a store server here and runs `nprocPerNode` ranks; with it, the node agents meet in that
 * store (the agent that can bind the endpoint serves it), agree on a world of `minNodes..maxNodes`
 * nodes, and each runs its workers. When a worker fails, every node stops its workers; with restarts
 * left, they meet again and start over (`maxRestarts`), else the job fails naming the first failure.
 */
export async function launch(opts: LaunchOptions): Promise<LaunchResult> {
  const op = "launch";
  opts.signal?.throwIfAborted();
  const n = opts.nprocPerNode;
  if (!Number.isInteger(n) || n < 1) {
    throw new InvalidArgumentError(`nprocPerNode must be a positive integer, got ${n}`, { op });
  }
  const minNodes = opts.minNodes ?? 1;
  const maxNodes = opts.maxNodes ?? minNodes;
  if (!Number.isInteger(minNodes) || minNodes < 1 || !Number.isInteger(maxNodes) || maxNodes < minNodes) {
    throw new InvalidArgumentError(`nodes must satisfy 1 <= MIN <= MAX, got ${minNodes}:${maxNodes}`, { op });
  }
  const standalone = opts.rdzvEndpoint === undefined;
  if (standalone && maxNodes > 1) {
    throw new InvalidArgumentError(
      `--nnodes ${minNodes}:${maxNodes} needs --rdzv-endpoint HOST:PORT (standalone runs one node)`,
      { op },
    );
  }
  const log = opts.log ?? ((m: string) => void terminalWriters().stderr.write(`launch: ${m}\n`));
  const parent = opts.parentEnv ?? readEnv();
  const givenId = opts.rdzvId ?? opts.env?.CHOIR_JOB_ID;
  // A token derived from a scheduler's public job id (the launcher under srun) is no secret: not used.
  let token = opts.token ?? (parent.tokenOrigin === undefined ? parent.token : undefined);
  if (token === "") throw new InvalidArgumentError("the job token must not be empty", { op });
  if (token === undefined) {
    if (standalone) token = generateToken();
    else token = derivedToken(opts.rdzvEndpoint!, givenId, log);
  }
  const heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 30_000;
  const monitorMs = opts.monitorIntervalMs ?? 100;
  const conn = await connectStore(opts, token, standalone);
  const where = `${conn.host}:${conn.port}`;
  const stop = new AbortController();
  let stopSignal: Deno.Signal = "SIGTERM";
  const onSignal = (sig: "SIGINT" | "SIGTERM") => () => {
    stopSignal = sig;
    stop.abort();
  };
  const stopCode = () => 128 + (stopSignal === "SIGINT" ? 2 : 15);
  const onInt = onSignal("SIGINT");
  const onTerm = onSignal("SIGTERM");
  const onAbort = () => stop.abort();
  if (opts.forwardSignals) {
    Deno.addSignalListener("SIGINT", onInt);
    Deno.addSignalListener("SIGTERM", onTerm);
  }
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  const dropped = opts.onOutput === undefined ? terminalWriters().stdout.droppedLines : 0;
  let runId = givenId ?? `j${generateToken().slice(0, 12)}`;
  let beat: RunBeat | undefined;
  let rdzv: PrefixStore | undefined;
  let result: AgentResult | undefined;
  try {
    // The store's instance id: a store replaced under the job is then a StoreError, not a fresh start.
    const instance = await claimStoreInstance(conn.client);
    const checkStore = () => verifyStoreInstance(conn.client, instance, where, { op: "launch" });
    if (givenId === undefined && !standalone) {
      try {
        runId = await claimDefaultRunId(conn.client, {
          heartbeatTimeoutMs,
          pollMs: Math.min(monitorMs, 50),
          log,
          signal: stop.signal,
        });
      } catch (err) {
        if (!(err instanceof AbortedError)) throw err;
        return {
          code: stopCode(),
          ranks: [],
          masterPort: conn.port,
          restarts: 0,
          rounds: 0,
          workerRestarts: 0,
        };
      }
      beat = new RunBeat(conn.client, runId, monitorMs);
      log(`no --rdzv-id: run id ${runId} (shared through the endpoint ${where})`);
    }
    rdzv = new PrefixStore(`choir/${runId}/rdzv/`, conn.client);
    result = await runAgent({
      program: opts.program,
      args: opts.args ?? [],
      denoFlags: opts.denoFlags ?? ["-A"],
      nprocPerNode: n,
      minNodes,
      maxNodes,
      nodeRank: opts.nodeRank,
      runId,
      store: rdzv,
      master: { addr: conn.host, port: conn.port },
      workerPrefix: `choir/${runId}/`,
      addr: conn.localAddr,
      token,
      baseEnv: workerEnvBase(opts, parent),
      maxRestarts: opts.maxRestarts ?? 0,
      restartFailed: opts.restartFailed ?? 0,
      monitorMs,
      lastCallMs: opts.lastCallMs ?? (standalone ? 0 : 3000),
      joinTimeoutMs: opts.joinTimeoutMs ?? 600_000,
      heartbeatTimeoutMs,
      graceMs: opts.graceMs ?? 5000,
      logDir: opts.logDir,
      onOutput: opts.onOutput,
      log,
      signal: stop.signal,
      stopSignal: () => stopSignal,
      // Ranks unlink their segments once every peer has mapped them; one killed in between leaves
      // its name behind. Every name of the job carries its id, so nothing outlives a round.
      afterRound: async () => {
        const swept = await sweepJobSegments(runId);
        if (swept > 0) log(`removed ${swept} shared-memory segment(s) left behind by ranks that died`);
      },
      checkStore,
      storeInstance: instance,
    });
    if (result.failed !== undefined) log(`job failed: ${failureSummary(result.failed)}`);
    return {
      code: result.code,
      ranks: result.ranks,
      failed: result.failed,
      masterPort: conn.port,
      restarts: result.restarts,
      rounds: result.rounds,
      workerRestarts: result.workerRestarts,
    };
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    if (opts.forwardSignals) {
      Deno.removeSignalListener("SIGINT", onInt);
      Deno.removeSignalListener("SIGTERM", onTerm);
    }
    beat?.stop();
    if (rdzv !== undefined && result?.world !== undefined && result.groupRank !== undefined && !standalone) {
      const world = result.world;
      // The node serving the store stays until every node has read the outcome.
      try {
        await markExit(rdzv, world, result.groupRank);
        if (conn.server !== undefined) await waitForExits(rdzv, world, 10_000);
        // The last node out releases a default run id: the next launch on the endpoint gets a new one.
        const exited = world.nodes.map((_, g) => roundKey(world.round, `exited/${g}`));
        if (beat !== undefined && (await rdzv.check(exited))) await releaseDefaultRunId(conn.client, runId);
      } catch { /* the store is gone: nothing left to wait for */ }
    }
    if (opts.onOutput === undefined) {
      const lost = terminalWriters().stdout.droppedLines - dropped;
      if (lost > 0) log(`stdout was not being read: dropped ${lost} line(s) of rank output`);
    }
    await conn.client.close();
    await conn.server?.close();
  }
}

interface StoreConn {
  client: TcpStore;
  server?: StoreServer;
  host: string;
  port: number;
  /** This node's address as the others see it. */
  localAddr: string;
}

/**
 * Across nodes without a token: the nodes cannot agree on a secret they were not given, so one is derived
 * from the run id, which keeps launches apart but anyone who can read the run id can join. Allowed only
 * when the endpoint is on loopback (every node on this host); otherwise an InvalidArgumentError saying how
 * to pass one.
 */
function derivedToken(endpoint: string, runId: string | undefined, log: (m: string) => void): string {
  const { host } = parseEndpoint(endpoint);
  if (!isLoopbackHost(host)) {
    throw new InvalidArgumentError(
      `--rdzv-endpoint ${endpoint} is not on loopback, and the nodes share no secret: set CHOIR_TOKEN to the ` +
        "same secret on every node (e.g. `export CHOIR_TOKEN=$(openssl rand -hex 32)` in the batch script " +
        "before srun), or pass --token-file FILE; see docs/security.md",
      { op: "launch" },
    );
  }
  log(
    `no CHOIR_TOKEN: using a token derived from the run id (no secret; the endpoint ${endpoint} is on loopback)`,
  );
  return `rdzv:${runId ?? "default-run"}`;
}

/**
 * Standalone: a store server here. Else the endpoint's, served by whichever agent can bind it; an agent
 * that cannot (the endpoint is another host's, or another agent of this job on this host serves it)
 * joins it, only once the server has proven it holds the job token.
 */
async function connectStore(opts: LaunchOptions, token: string, standalone: boolean): Promise<StoreConn> {
  const op = "launch";
  const joinTimeoutMs = opts.joinTimeoutMs ?? 600_000;
  // Every request but the first (which may wait for the serving agent to start) is bounded by the
  // heartbeat timeout: a store host that vanishes is a StoreError within it, not a hang.
  const timeoutMs = Math.max(opts.heartbeatTimeoutMs ?? 30_000, 5000);
  if (standalone) {
    const host = opts.masterAddr ?? "127.0.0.1";
    const thread = storeThreadFor(opts.nprocPerNode);
    const server = await startStoreServer({ hostname: host, port: opts.masterPort ?? 0, token, thread });
    const client = new TcpStore({ host, port: server.port, token, timeoutMs });
    return { client, server, host, port: server.port, localAddr: host };
  }
  const { host, port } = parseEndpoint(opts.rdzvEndpoint!);
  let server: StoreServer | undefined;
  try {
    const thread = storeThreadFor(opts.nprocPerNode * (opts.maxNodes ?? opts.minNodes ?? 1));
    server = await startStoreServer({ hostname: host, port, token, thread });
  } catch (err) {
    // Not this host's address, or the port is taken (by another agent of this job, which will prove
    // it holds the token, or by something that cannot and is refused below): be a client. Anything
    // else is an error.
    const cause = err instanceof Error ? err.cause : undefined;
    const taken = cause instanceof Deno.errors.AddrInUse;
    if (err instanceof PermissionError || (!taken && !(cause instanceof Deno.errors.AddrNotAvailable))) {
      throw err;
    }
  }
  const client = new TcpStore({ host, port, token, timeoutMs, connectTimeoutMs: joinTimeoutMs });
  let localAddr = host;
  if (server === undefined) {
    try {
      await client.check([]);
      const c = await Deno.connect({ hostname: host, port });
      localAddr = (c.localAddr as Deno.NetAddr).hostname;
      c.close();
    } catch (err) {
      await client.close();
      if (err instanceof AuthError || err instanceof PermissionError) throw err;
      throw new RendezvousError(
        `cannot reach the rendezvous store at ${host}:${port}: ${err instanceof Error ? err.message : err}`,
        { op, cause: err },
      );
    }
  }
  return { client, server, host, port, localAddr };
}

/** Parses `HOST:PORT` (IPv6 as `[::1]:PORT`). */
export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = endpoint.match(/^\[?([^\]]*?)\]?:(\d+)$/);
  const port = m ? Number(m[2]) : NaN;
  if (!m || m[1] === "" || !(port > 0 && port < 65536)) {
    throw new InvalidArgumentError(`--rdzv-endpoint must be HOST:PORT, got ${JSON.stringify(endpoint)}`, {
      op: "launch",
    });
  }
  return { host: m[1], port };
}

function workerEnvBase(opts: LaunchOptions, parent: ChoirEnv): Record<string, string> {
  const env: Record<string, string> = {};
  if (parent.glibcTunables === undefined && opts.env?.GLIBC_TUNABLES === undefined) {
    env.GLIBC_TUNABLES = GLIBC_TUNABLES_DEFAULT;
  }
  return { ...env, ...opts.env, ...(opts.bindTo === undefined ? {} : { CHOIR_CPU_BIND: opts.bindTo }) };
}

/**
 * The CLI: parses `argv`, runs the job with signal forwarding, and returns the exit code (after up to
 * 2 s for queued output to be read).
 */
export async function main(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseLaunchArgs(argv);
  } catch (err) {
    console.error(`launch: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    let token = parsed.token;
    if (token !== undefined) {
      terminalWriters().stderr.write(
        "launch: --token is visible to every user of this host (ps): prefer CHOIR_TOKEN or --token-file\n",
      );
    }
    if (parsed.tokenFile !== undefined) token = await readTokenFile(parsed.tokenFile);
    const result = await launch({
      program: parsed.program!,
      args: parsed.args,
      nprocPerNode: parsed.nprocPerNode,
      minNodes: parsed.minNodes,
      maxNodes: parsed.maxNodes,
      nodeRank: parsed.nodeRank,
      rdzvEndpoint: parsed.standalone ? undefined : parsed.rdzvEndpoint,
      rdzvId: parsed.rdzvId,
      maxRestarts: parsed.maxRestarts,
      restartFailed: parsed.restartFailed,
      monitorIntervalMs: parsed.monitorIntervalMs,
      logDir: parsed.logDir,
      lastCallMs: parsed.lastCallMs,
      joinTimeoutMs: parsed.joinTimeoutMs,
      heartbeatTimeoutMs: parsed.heartbeatTimeoutMs,
      masterAddr: parsed.masterAddr,
      masterPort: parsed.masterPort,
      token,
      graceMs: parsed.graceMs,
      bindTo: parsed.bindTo,
      forwardSignals: true,
    });
    return result.code;
  } catch (err) {
    terminalWriters().stderr.write(`launch: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    // What is queued goes out, unless nobody reads it: then the launcher exits without it.
    const out = terminalWriters();
    await Promise.all([out.stdout.flush(FLUSH_AT_EXIT_MS), out.stderr.flush(FLUSH_AT_EXIT_MS)]);
  }
}

/** The token in `path` (surrounding whitespace dropped); InvalidArgumentError when unreadable or empty. */
async function readTokenFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read --token-file ${path}: ${(err as Error).message}`, {
      op: "launch",
      cause: err,
    });
  }
  const token = text.trim();
  if (token === "") throw new InvalidArgumentError(`--token-file ${path} is empty`, { op: "launch" });
  return token;
}

/** How long the CLI waits at exit for queued output to be read. */
const FLUSH_AT_EXIT_MS = 2000;
