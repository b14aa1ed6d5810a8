/**
 * @module
 * The one place that reads environment variables. Everything else takes a typed {@link ChoirEnv}
 * so that tests and embedders can pass their own values instead of mutating the process env.
 */

import { detectScheduler, type SchedulerKind } from "./schedulers.ts";

/** The environment contract of a choir rank (torchrun's, plus CHOIR_* settings). */
export interface ChoirEnv {
  /** `RANK`: this process's global rank. */
  rank?: number;
  /** `WORLD_SIZE`: number of ranks in the job. */
  worldSize?: number;
  /** `GROUP_RANK`: the rank of this node among the nodes (set by the launcher). */
  groupRank?: number;
  /** `TORCHELASTIC_RESTART_COUNT`: how often the launcher restarted the workers so far. */
  restartCount?: number;
  /**
   * The scheduler whose variables filled in what RANK / WORLD_SIZE / MASTER_* / CHOIR_TOKEN did not say,
   * when RANK or WORLD_SIZE is absent: SLURM (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, first host
   * of `SLURM_JOB_NODELIST`), Open MPI (`OMPI_COMM_WORLD_*`), PMI (`PMI_RANK`, `PMI_SIZE`) or a
   * Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, `CHOIR_K8S_SERVICE`). See schedulers.ts, docs/cluster.md.
   */
  scheduler?: SchedulerKind;
  /** `LOCAL_RANK`: rank among the processes on this host. */
  localRank?: number;
  /** `LOCAL_WORLD_SIZE`: number of ranks on this host. */
  localWorldSize?: number;
  /** `MASTER_ADDR`: host of the store server. */
  masterAddr?: string;
  /** `MASTER_PORT`: port of the store server. */
  masterPort?: number;
  /**
   * `CHOIR_TOKEN`: the job's secret, which the store and every transport handshake prove without sending.
   * Without it, the scheduler's token (derived from its job) fills in.
   */
  token?: string;
  /**
   * Set when `token` was derived from a public job identifier (no CHOIR_TOKEN): what it came from. Such
   * a token is refused for any store not on loopback.
   */
  tokenOrigin?: string;
  /** `CHOIR_TIMEOUT`: default timeout of collectives and rendezvous, in milliseconds. */
  timeoutMs?: number;
  /** `CHOIR_TRANSPORT`: force a transport (`tcp`, `shm` or `ucx`; UCX reads its own UCX_* settings). */
  transport?: string;
  /**
   * `CHOIR_JOB_ID` (or torchrun's `TORCHELASTIC_RUN_ID`): names the job's shared-memory segments, so
   * the launcher can remove what a killed rank left behind.
   */
  jobId?: string;
  /**
   * `CHOIR_STORE_PREFIX`: put every store key of `env://` / `tcp://` rendezvous under this prefix (the
   * elastic launcher gives each round its own, in one long-lived store).
   */
  storePrefix?: string;
  /** `CHOIR_HOST_ID`: overrides the host identity used to find same-host peers. */
  hostId?: string;
  /**
   * `CHOIR_CHECKSUM` (`1`/`true`): every TCP payload carries a CRC32C, and a corrupted one is a
   * DataCorruptionError. Every rank must set it alike.
   */
  checksum?: boolean;
  /** `CHOIR_BIND_ADDR`: the address transport listeners bind to. */
  bindAddr?: string;
  /**
   * `CHOIR_SOCKET_IFNAME` (or Gloo's `GLOO_SOCKET_IFNAME`): the network interface whose IPv4 address
   * the transport listeners bind to (when `CHOIR_BIND_ADDR` is not set).
   */
  socketIfname?: string;
  /**
   * `CHOIR_STORE_EXTERNAL` (`1`/`true`): the store server at MASTER_ADDR:MASTER_PORT is run by
   * someone else (the launcher), so rank 0 must not start one for `env://` rendezvous.
   */
  storeExternal?: boolean;
  /**
   * `CHOIR_STORE_INSTANCE`: the instance id of the launcher's store when the workers started; ElasticState
   * compares it with the store's, to tell "nothing committed" from "the store holding the commits is gone".
   */
  storeInstance?: string;
  /**
   * `CHOIR_STATUS_PORT`: start the status endpoint (`/status`, `/metrics`) on this port plus the
   * local rank; 0 picks a free port per rank. Unset: no endpoint.
   */
  statusPort?: number;
  /** `CHOIR_STATUS_ADDR`: address the status endpoint binds to (default 127.0.0.1). */
  statusAddr?: string;
  /**
   * `CHOIR_FLIGHT_RECORDER`: operations each group's flight recorder keeps (default 256; 0 turns
   * recording off).
   */
  flightRecorder?: number;
  /** `CHOIR_HEARTBEAT_MS`: milliseconds between heartbeat frames (default 1000; 0 turns it off). */
  heartbeatMs?: number;
  /** `CHOIR_HEARTBEAT_TIMEOUT`: milliseconds of silence after which a rank is lost (default 10000). */
  heartbeatTimeoutMs?: number;
  /**
   * `CHOIR_HEARTBEAT_START_MS`: milliseconds after the world group forms that its heartbeat thread
   * starts (default 1000; 0 starts it before the rendezvous).
   */
  heartbeatStartMs?: number;
  /** `GLIBC_TUNABLES`, read so the launcher keeps a user's value instead of setting its own. */
  glibcTunables?: string;
  /**
   * `CHOIR_ALGO`: force a collective algorithm (`ring`, `tree`, `rabenseifner`, `recursive_doubling`,
   * `direct`, `binomial`, `chain`, `ordered`, `hierarchical`); `auto` or unset lets the plan choose.
   */
  algorithm?: string;
  /** `CHOIR_DETERMINISTIC` (`1`/`true`): reductions fold in rank order, bitwise reproducible. */
  deterministic?: boolean;
  /**
   * `CHOIR_CONNECT`: when a group opens its links: `eager` (every peer, at creation), `lazy` (each peer
   * on first use) or `auto` (eager up to 16 ranks, lazy above; the default).
   */
  connect?: string;
  /**
   * `CHOIR_CPU_BIND`: `core` binds each rank's main thread to one CPU (the `LOCAL_RANK`-th of those the
   * process may use, modulo their number), `none` (the default) leaves placement to the kernel. The
   * launcher's `--bind-to` sets it.
   */
  cpuBind?: string;
  /** `CHOIR_CUDA_PATH`: the CUDA driver library to open instead of `libcuda.so.1` (a path or a name). */
  cudaPath?: string;
  /** `CHOIR_CUBLAS_PATH`: the cuBLAS library to open first (a path to `libcublas.so.*`, or its folder). */
  cublasPath?: string;
  /** `CUDA_HOME` (or `CUDA_PATH`): the CUDA toolkit folder whose `lib64` may hold cuBLAS. */
  cudaHome?: string;
  /**
   * Python environments whose site-packages may hold a pip-installed cuBLAS (`nvidia/cublas/lib`, as
   * PyTorch wheels bring it): `VIRTUAL_ENV`, `CONDA_PREFIX`, and `HOME` (for `~/.local`).
   */
  pythonPrefixes?: readonly string[];
}

function int(v: string | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  return Number.isInteger(n) ? n : undefined;
}

function bool(v: string | undefined): boolean | undefined {
  if (v === undefined || v === "") return undefined;
  return ["1", "true", "yes", "on"].includes(v.toLowerCase());
}

function str(v: string | undefined): string | undefined {
  return v === undefined || v === "" ? undefined : v;
}

/**
 * Reads the choir environment variables. Without `--allow-env` permission it returns an empty
 * config instead of throwing, so embedders that pass everything explicitly need no env access.
 */
export function readEnv(get: (name: string) => string | undefined = safeGet): ChoirEnv {
  const rank = int(get("RANK"));
  const worldSize = int(get("WORLD_SIZE"));
  // A scheduler's variables count only where the torchrun contract is incomplete (no launcher).
  const sched = rank === undefined || worldSize === undefined ? detectScheduler(get) : undefined;
  return {
    rank: rank ?? sched?.rank,
    worldSize: worldSize ?? sched?.worldSize,
    groupRank: int(get("GROUP_RANK")),
    restartCount: int(get("TORCHELASTIC_RESTART_COUNT")),
    scheduler: sched?.kind,
    localRank: int(get("LOCAL_RANK")) ?? sched?.localRank,
    localWorldSize: int(get("LOCAL_WORLD_SIZE")) ?? sched?.localWorldSize,
    masterAddr: str(get("MASTER_ADDR")) ?? sched?.masterAddr,
    masterPort: int(get("MASTER_PORT")) ?? sched?.masterPort,
    token: str(get("CHOIR_TOKEN")) ?? sched?.token,
    tokenOrigin: str(get("CHOIR_TOKEN")) === undefined ? sched?.tokenOrigin : undefined,
    timeoutMs: int(get("CHOIR_TIMEOUT")),
    transport: str(get("CHOIR_TRANSPORT")),
    hostId: str(get("CHOIR_HOST_ID")),
    storePrefix: str(get("CHOIR_STORE_PREFIX")),
    jobId: str(get("CHOIR_JOB_ID")) ?? str(get("TORCHELASTIC_RUN_ID")) ?? sched?.jobId,
    bindAddr: str(get("CHOIR_BIND_ADDR")),
    checksum: bool(get("CHOIR_CHECKSUM")),
    socketIfname: str(get("CHOIR_SOCKET_IFNAME")) ?? str(get("GLOO_SOCKET_IFNAME")),
    storeExternal: bool(get("CHOIR_STORE_EXTERNAL")),
    storeInstance: str(get("CHOIR_STORE_INSTANCE")),
    statusPort: int(get("CHOIR_STATUS_PORT")),
    statusAddr: str(get("CHOIR_STATUS_ADDR")),
    flightRecorder: int(get("CHOIR_FLIGHT_RECORDER")),
    heartbeatMs: int(get("CHOIR_HEARTBEAT_MS")),
    heartbeatTimeoutMs: int(get("CHOIR_HEARTBEAT_TIMEOUT")),
    heartbeatStartMs: int(get("CHOIR_HEARTBEAT_START_MS")),
    glibcTunables: str(get("GLIBC_TUNABLES")),
    algorithm: str(get("CHOIR_ALGO")),
    deterministic: bool(get("CHOIR_DETERMINISTIC")),
    connect: str(get("CHOIR_CONNECT")),
    cpuBind: str(get("CHOIR_CPU_BIND")),
    cudaPath: str(get("CHOIR_CUDA_PATH")),
    cublasPath: str(get("CHOIR_CUBLAS_PATH")),
    cudaHome: str(get("CUDA_HOME")) ?? str(get("CUDA_PATH")),
    pythonPrefixes: [get("VIRTUAL_ENV"), get("CONDA_PREFIX"), ...[get("HOME")].map((h) => h && `${h}/.local`)]
      .filter((v): v is string => v !== undefined && v !== ""),
  };
}

function safeGet(name: string): string | undefined {
  try {
    // Ask first: on a terminal, reading an unpermitted variable would prompt instead of failing.
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return undefined;
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Default timeout of collectives and rendezvous when none is configured: 5 minutes. */
export const DEFAULT_TIMEOUT_MS = 300_000;
