/**
 * @module
 * `initProcessGroup()`: rendezvous through the store named by the init method (env:// by default),
 * start the transport, connect to the peers and return a ready {@link ProcessGroup}.
 */

import { type ChoirEnv, DEFAULT_TIMEOUT_MS, readEnv } from "../config.ts";
import { createStore } from "../transports/store/mod.ts";
import type { Store } from "../transports/store/store.ts";
import { connectsLazily, openGroup } from "./open_group.ts";
import { recorderCapacity } from "./diagnostics/flight_recorder.ts";
import { startStatusServer, type StatusServer } from "./diagnostics/status_server.ts";
import type { ProcessGroup } from "./process_group.ts";
import { type Algorithm, ALGORITHMS, FORCIBLE_OPS, isForcible } from "./plan/plan.ts";
import { type ChoirError, InvalidArgumentError, PeerLostError } from "../errors.ts";
import { isWorkerRank } from "../transports/worker/rank.ts";
import { workerProcessGroup } from "./worker_group.ts";
import {
  deferHeartbeat,
  type Heartbeat,
  HEARTBEAT_DEFAULTS,
  type HeartbeatThread,
  spawnHeartbeatThread,
  startHeartbeat,
} from "../transports/heartbeat/heartbeat.ts";
import { PrefixStore } from "../transports/store/prefix_store.ts";
import { bindToCore, type CpuBind, parseCpuBind } from "../transports/cpu_bind.ts";

/** Options of {@link initProcessGroup}; anything left out comes from the environment (env://). */
export interface InitOptions {
  /** `env://` (default), `tcp://host:port` or `file:///path`. */
  initMethod?: string;
  /** This process's rank (default: `RANK`). */
  rank?: number;
  /** Number of ranks (default: `WORLD_SIZE`). */
  worldSize?: number;
  /**
   * The job token (default: `CHOIR_TOKEN`; for `file://` without one, the random token the job keeps in
   * its store directory). An empty one is refused.
   */
  token?: string;
  /** Default timeout of rendezvous and every collective, in ms (default: `CHOIR_TIMEOUT` or 5 min). */
  timeoutMs?: number;
  /**
   * Transport: `auto` (default; shared memory between ranks on one host, TCP across hosts), or
   * force `tcp` or `shm`. Default: `CHOIR_TRANSPORT`, else `auto`. (In a Worker rank started by
   * `spawnWorkers()`, initProcessGroup joins the Worker group over the Worker transport instead.)
   */
  transport?: "auto" | "tcp" | "shm";
  /** Bytes per pipelined chunk of large messages (default 1 MiB). */
  chunkBytes?: number;
  /**
   * Force this algorithm where it applies (see `ProcessGroupOptions.algorithm`). Default:
   * `CHOIR_ALGO`; `auto` lets the plan choose.
   */
  algorithm?: Algorithm | "auto";
  /** Deterministic reductions (see `ProcessGroupOptions.deterministic`). Default: `CHOIR_DETERMINISTIC`. */
  deterministic?: boolean;
  /**
   * Liveness between collectives (`transports/heartbeat/`): each rank's own thread exchanges a frame
   * with its ring neighbours every `intervalMs`; a rank that exits without destroy() or is killed is
   * reported lost within about half a second, one silent for `timeoutMs` (its host vanished) after
   * that long, and the group breaks with a PeerLostError naming it on every rank, even between
   * collectives. `false` turns it off. Default: on, `CHOIR_HEARTBEAT_MS` (0 turns it off, default
   * 1000) and `CHOIR_HEARTBEAT_TIMEOUT` (default 10000). Its thread starts `startMs` after the group
   * forms (`CHOIR_HEARTBEAT_START_MS`, default 1000; 0 starts it before the rendezvous): creating a
   * thread blocks a rank for 40-100 ms, which a small job's start-up would otherwise wait for.
   */
  heartbeat?: false | { intervalMs?: number; timeoutMs?: number; startMs?: number };
  /**
   * When groups open their links (see `ProcessGroupOptions.connect`): `eager`, `lazy`, or `auto` (eager
   * up to 16 ranks, lazy above). Default: `CHOIR_CONNECT`, else `auto`.
   */
  connect?: "eager" | "lazy" | "auto";
  /**
   * Binds this rank's thread to a CPU: `core` takes the `LOCAL_RANK`-th CPU this process may use
   * (modulo their number; `RANK` without a LOCAL_RANK), as mpirun's `--bind-to core` does; `none` leaves
   * placement to the kernel. Default: `CHOIR_CPU_BIND` (the launcher's `--bind-to`), else `none`. Needs
   * `--allow-ffi` and Linux; Worker ranks are threads of one process and are not bound. Threads the rank
   * starts afterwards (its heartbeat, Workers of its own) share its CPU.
   */
  cpuBind?: CpuBind;
  /** Environment to read instead of the process's (for tests and embedders). */
  env?: ChoirEnv;
}

const LOOPBACK = /^(127\.|localhost$|::1$|\[::1\]$)/;

/**
 * Joins the job: rendezvous, connect every rank to every other, and return the world group.
 * Throws `RendezvousError` naming the ranks that never arrived when the timeout passes, or the rank
 * that two processes joined as (on every process of the job; a duplicate that turns up after the job
 * started breaks the world group with that error within about a second).
 *
 * @example
 * ```ts
 * import { initProcessGroup, ReduceOp } from "@choir/choir";
 * const pg = await initProcessGroup(); // env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
 * const x = new Float32Array(1024).fill(pg.rank);
 * await pg.allReduce(x, { op: ReduceOp.SUM });
 * await pg.destroy();
 * ```
 */
export async function initProcessGroup(opts: InitOptions = {}): Promise<ProcessGroup> {
  // A Worker rank from spawnWorkers() joins its Worker group: the same program runs either way.
  if (isWorkerRank() && opts.initMethod === undefined) {
    return await workerProcessGroup({
      timeoutMs: opts.timeoutMs,
      chunkBytes: opts.chunkBytes,
      algorithm: forcedAlgorithm(opts.algorithm),
      deterministic: opts.deterministic,
    });
  }
  const env = opts.env ?? readEnv();
  const timeoutMs = opts.timeoutMs ?? env.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const algorithm = forcedAlgorithm(opts.algorithm ?? env.algorithm);
  connectsLazily(opts.connect ?? env.connect, 1); // a typo must not cost a rendezvous either
  bindCpu(opts, env);
  // Started at once (startMs 0), the heartbeat's thread is spawned before the rendezvous: creating it
  // costs this thread 40-100 ms here, which then overlaps waiting for the other ranks.
  const thread = heartbeatMs(opts, env) > 0 && heartbeatStartMs(opts, env) === 0 &&
      (opts.worldSize ?? env.worldSize ?? 2) > 1
    ? spawnHeartbeatThread()
    : undefined;
  let rdzv: Awaited<ReturnType<typeof createStore>>;
  try {
    rdzv = await createStore(opts.initMethod ?? "env://", {
      rank: opts.rank,
      worldSize: opts.worldSize,
      token: opts.token,
      timeoutMs,
      env,
    });
  } catch (e) {
    await thread?.discard();
    throw e;
  }
  const { rank, worldSize, store, token } = rdzv;
  let status: StatusServer | undefined;
  let heartbeat: Heartbeat | undefined;
  try {
    const addr = await listenAddress(env);
    // Started first so its thread comes up while the group forms; a loss it reports before the
    // group exists breaks the group as soon as there is one.
    const world: { pg?: ProcessGroup } = {};
    let early: ChoirError | undefined;
    // What the heartbeat brought: breaking the group with it must not send it round again.
    const heard = new WeakSet<Error>();
    heartbeat = startWorldHeartbeat(opts, env, thread, {
      rank,
      size: worldSize,
      token,
      store,
      bind: addr.bind,
      advertise: addr.advertise,
      onNews: (err) => {
        heard.add(err);
        if (!world.pg) early ??= err;
        else if (!world.pg.failure) void world.pg.abort(err).catch(() => {});
      },
    });
    // The world group's first own failure goes round the ring (the heartbeat's `tell`), unless it is
    // a lost peer: the heartbeat finds that one itself, and a rank that saw only a neighbour's links
    // close may blame the messenger; passing that on would spread the wrong name.
    let toldOnce = false;
    const onBreak = async (cause: ChoirError) => {
      const first = world.pg?.failure ?? cause;
      if (toldOnce || heard.has(first) || heard.has(cause) || first instanceof PeerLostError) return;
      toldOnce = true;
      await heartbeat?.tell(first);
    };
    const pg = await openGroup({
      job: {
        store,
        token,
        transport: opts.transport ?? env.transport,
        chunkBytes: opts.chunkBytes,
        bind: addr.bind,
        advertise: addr.advertise,
        hostIdOverride: env.hostId,
        jobId: env.jobId,
        flightRecorder: recorderCapacity(env.flightRecorder),
        checksum: env.checksum,
        algorithm,
        deterministic: opts.deterministic ?? env.deterministic ?? false,
        connect: opts.connect ?? env.connect,
      },
      tag: "pg0",
      ranks: Array.from({ length: worldSize }, (_, r) => r),
      rank,
      timeoutMs,
      watchDuplicates: true,
      onBreak,
      onDestroy: async () => {
        await heartbeat?.stop();
        await status?.close();
        await rdzv.close();
      },
    });
    world.pg = pg;
    if (early) void pg.abort(early).catch(() => {});
    if (env.statusPort !== undefined) {
      // One endpoint per rank; ranks of one host take consecutive ports from CHOIR_STATUS_PORT.
      status = await startStatusServer({
        hostname: env.statusAddr ?? "127.0.0.1",
        port: env.statusPort === 0 ? 0 : env.statusPort + (env.localRank ?? 0),
        token,
        rank,
        status: () => pg.status(),
        metrics: () => pg.metrics.text(),
      });
    }
    return pg;
  } catch (e) {
    if (heartbeat) await heartbeat.stop();
    else await thread?.discard();
    // Rank 0 may host the store server: keep it up a moment so the other ranks reach their own
    // verdict (e.g. "rank 2 never arrived") instead of a vanished server.
    if (rank === 0) await new Promise((r) => setTimeout(r, Math.min(2000, timeoutMs / 2)));
    await rdzv.close();
    throw e;
  }
}

/** The world group's heartbeat, unless turned off (option or `CHOIR_HEARTBEAT_MS=0`) or alone. */
function startWorldHeartbeat(
  opts: InitOptions,
  env: ChoirEnv,
  thread: HeartbeatThread | undefined,
  o: Omit<Parameters<typeof startHeartbeat>[0], "intervalMs" | "timeoutMs" | "store"> & { store: Store },
): Heartbeat | undefined {
  const intervalMs = heartbeatMs(opts, env);
  if (intervalMs <= 0 || o.size < 2) {
    void thread?.discard();
    return undefined;
  }
  const timeoutMs = (opts.heartbeat ? opts.heartbeat.timeoutMs : undefined) ?? env.heartbeatTimeoutMs ??
    HEARTBEAT_DEFAULTS.timeoutMs;
  const store = new PrefixStore("heartbeat/", o.store);
  const start = () => startHeartbeat({ ...o, store, intervalMs, timeoutMs }, thread);
  const startMs = heartbeatStartMs(opts, env);
  return startMs === 0 ? start() : deferHeartbeat(start, startMs, { store, rank: o.rank, onNews: o.onNews });
}

/** Milliseconds after the group forms that its heartbeat thread starts (0: before the rendezvous). */
function heartbeatStartMs(opts: InitOptions, env: ChoirEnv): number {
  const ms = (opts.heartbeat ? opts.heartbeat.startMs : undefined) ?? env.heartbeatStartMs ??
    HEARTBEAT_DEFAULTS.startMs;
  return Math.max(0, ms);
}

/** Milliseconds between heartbeat frames; 0 when the heartbeat is off. */
function heartbeatMs(opts: InitOptions, env: ChoirEnv): number {
  return (opts.heartbeat === false ? 0 : opts.heartbeat?.intervalMs) ?? env.heartbeatMs ??
    HEARTBEAT_DEFAULTS.intervalMs;
}

/** The forced algorithm, checked before any rank joins (a typo must not cost a rendezvous). */
export function forcedAlgorithm(name: string | undefined): Algorithm | undefined {
  if (name === undefined || name === "auto") return undefined;
  if (!isForcible(name)) {
    const names = [...new Set(FORCIBLE_OPS.flatMap((op) => ALGORITHMS[op]))];
    throw new InvalidArgumentError(
      `CHOIR_ALGO / algorithm "${name}" is not an algorithm; choose auto or one of ${names.join(", ")}`,
      { op: "initProcessGroup" },
    );
  }
  return name;
}

/**
 * Where to listen: `CHOIR_BIND_ADDR`, else `CHOIR_SOCKET_IFNAME`'s address, else loopback for a
 * single-host job, otherwise the interface that reaches the master. Never every interface (0.0.0.0).
 */
export async function listenAddress(env: ChoirEnv): Promise<{ bind: string; advertise?: string }> {
  if (env.bindAddr) return { bind: env.bindAddr };
  if (env.socketIfname) return { bind: interfaceAddress(env.socketIfname) };
  const master = env.masterAddr;
  if (!master || LOOPBACK.test(master)) return { bind: "127.0.0.1" };
  // Ask the kernel which local address routes to the master: connect once and read it back.
  const conn = await Deno.connect({ hostname: master, port: env.masterPort ?? 29500 });
  const local = (conn.localAddr as Deno.NetAddr).hostname;
  conn.close();
  return { bind: local };
}

/** The IPv4 address of network interface `name`; an InvalidArgumentError naming the ones there are. */
export function interfaceAddress(name: string): string {
  const all = Deno.networkInterfaces();
  const hit = all.find((i) => i.name === name && i.family === "IPv4");
  if (!hit) {
    const names = [...new Set(all.map((i) => i.name))].join(", ");
    throw new InvalidArgumentError(
      `CHOIR_SOCKET_IFNAME=${name}: no interface of that name with an IPv4 address (there are: ${names})`,
      { op: "initProcessGroup" },
    );
  }
  return hit.address;
}

/**
 * Applies `cpuBind` (or CHOIR_CPU_BIND) before anything else starts a thread, so the heartbeat's thread
 * shares the rank's CPU instead of competing with another rank's.
 */
function bindCpu(opts: InitOptions, env: ChoirEnv): void {
  const mode = parseCpuBind(opts.cpuBind ?? env.cpuBind, opts.cpuBind ? "cpuBind" : "CHOIR_CPU_BIND") ??
    "none";
  if (mode === "none") return;
  const local = env.localRank ?? opts.rank ?? env.rank;
  if (local === undefined) {
    throw new InvalidArgumentError('cpuBind "core" needs LOCAL_RANK (or RANK) to pick a CPU', { op: "init" });
  }
  bindToCore(local);
}
