/**
 * @module
 * What cluster schedulers tell a process about its place in a job — SLURM (srun), Open MPI (mpirun),
 * PMI (MPICH/Intel MPI hydra) and Kubernetes Indexed Jobs — turned into choir's env contract, so that
 * `initProcessGroup()` runs with no launcher. config.ts hands in the variable getter and decides precedence.
 */

/** The scheduler whose variables filled in the rank and world size. */
export type SchedulerKind = "slurm" | "openmpi" | "pmi" | "kubernetes";

/** What a scheduler's env says; fields it does not know are absent. */
export interface SchedulerEnv {
  /** Which scheduler. */
  kind: SchedulerKind;
  /** Global rank. */
  rank?: number;
  /** Number of ranks. */
  worldSize?: number;
  /** Rank on this host. */
  localRank?: number;
  /** Ranks on this host. */
  localWorldSize?: number;
  /** Host of rank 0, where rank 0 serves the store. */
  masterAddr?: string;
  /** The store's port, derived from the scheduler's job id so that every rank computes the same. */
  masterPort?: number;
  /** A job id (names shared-memory segments). */
  jobId?: string;
  /** A job token derived from the scheduler's job (not a secret unless `tokenOrigin` is absent). */
  token?: string;
  /**
   * What `token` was derived from when that is public (a job id anyone can list): such a token is refused
   * off loopback. Absent when it came from a per-job secret (Open MPI's random transport key).
   */
  tokenOrigin?: string;
}

/** Ports derived from job ids fall in [PORT_BASE, PORT_BASE + PORT_SPAN). */
export const PORT_BASE = 20000;
const PORT_SPAN = 10000;
/** The default store port where nothing better is known (torch's). */
const DEFAULT_MASTER_PORT = 29500;

function int(v: string | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  return Number.isInteger(n) ? n : undefined;
}

function portFrom(id: string): number {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PORT_BASE + (h % PORT_SPAN);
}

/**
 * Reads the variables of the first scheduler found (SLURM, Open MPI, PMI, Kubernetes, in that order)
 * through `get`; undefined when none is.
 */
export function detectScheduler(get: (name: string) => string | undefined): SchedulerEnv | undefined {
  const slurmRank = int(get("SLURM_PROCID"));
  const slurmSize = int(get("SLURM_NTASKS"));
  if (slurmRank !== undefined && slurmSize !== undefined) {
    const job = get("SLURM_JOB_ID") ?? get("SLURM_JOBID") ?? "0";
    const step = get("SLURM_STEP_ID") ?? get("SLURM_STEPID") ?? "0";
    const nodes = get("SLURM_JOB_NODELIST") ?? get("SLURM_NODELIST") ?? get("SLURM_STEP_NODELIST");
    const perNode = get("SLURM_STEP_TASKS_PER_NODE") ?? get("SLURM_TASKS_PER_NODE");
    return {
      kind: "slurm",
      rank: slurmRank,
      worldSize: slurmSize,
      localRank: int(get("SLURM_LOCALID")),
      localWorldSize: int(get("SLURM_NTASKS_PER_NODE")) ??
        (perNode ? int(perNode.split(/[(,]/)[0]) : undefined),
      masterAddr: nodes ? firstHost(nodes) : undefined,
      masterPort: portFrom(`slurm-${job}-${step}`),
      jobId: `slurm-${job}-${step}`,
      token: `slurm-${job}-${step}`,
      tokenOrigin: "the SLURM job id (SLURM_JOB_ID, listed by squeue)",
    };
  }
  const ompiRank = int(get("OMPI_COMM_WORLD_RANK"));
  const ompiSize = int(get("OMPI_COMM_WORLD_SIZE"));
  if (ompiRank !== undefined && ompiSize !== undefined) {
    const job = get("OMPI_MCA_ess_base_jobid") ?? get("OMPI_MCA_orte_ess_jobid") ?? "0";
    // On one node rank 0 is local; across nodes mpirun's own host (where rank 0 runs by default).
    const multi = (int(get("OMPI_MCA_orte_num_nodes")) ?? 1) > 1;
    const hnp = get("OMPI_MCA_orte_hnp_uri")?.match(/tcp:\/\/([0-9.]+):/)?.[1];
    const key = get("OMPI_MCA_orte_precondition_transports") || undefined;
    return {
      kind: "openmpi",
      rank: ompiRank,
      worldSize: ompiSize,
      localRank: int(get("OMPI_COMM_WORLD_LOCAL_RANK")),
      localWorldSize: int(get("OMPI_COMM_WORLD_LOCAL_SIZE")),
      masterAddr: multi && hnp ? hnp : "127.0.0.1",
      masterPort: portFrom(`ompi-${job}`),
      jobId: `ompi-${job}`,
      // mpirun gives each job a random key, the same on every rank, in the ranks' environment only.
      token: `ompi-${key ?? job}`,
      tokenOrigin: key === undefined ? "the Open MPI job id (OMPI_MCA_ess_base_jobid)" : undefined,
    };
  }
  const pmiRank = int(get("PMI_RANK"));
  const pmiSize = int(get("PMI_SIZE"));
  if (pmiRank !== undefined && pmiSize !== undefined) {
    const job = get("PMI_KVSNAME") ?? get("PMIX_NAMESPACE") ?? "pmi";
    return {
      kind: "pmi",
      rank: pmiRank,
      worldSize: pmiSize,
      localRank: int(get("MPI_LOCALRANKID")) ?? int(get("PMI_LOCAL_RANK")),
      localWorldSize: int(get("MPI_LOCALNRANKS")) ?? int(get("PMI_LOCAL_SIZE")),
      masterAddr: "127.0.0.1",
      masterPort: portFrom(`pmi-${job}`),
      jobId: `pmi-${job}`,
      token: `pmi-${job}`,
      tokenOrigin: "the PMI job name (PMI_KVSNAME)",
    };
  }
  const index = int(get("JOB_COMPLETION_INDEX"));
  if (index !== undefined) {
    // An Indexed Job's pod is named JOB-INDEX; with a headless Service as subdomain, pod 0 resolves
    // as JOB-0.SERVICE.
    const host = get("HOSTNAME") ?? "";
    const job = get("CHOIR_K8S_JOB") ?? host.replace(new RegExp(`-${index}$`), "");
    const service = get("CHOIR_K8S_SERVICE");
    return {
      kind: "kubernetes",
      rank: index,
      localRank: 0,
      localWorldSize: 1,
      masterAddr: service && job ? `${job}-0.${service}` : undefined,
      masterPort: DEFAULT_MASTER_PORT,
      jobId: `k8s-${job}`,
      token: `k8s-${job}`,
      tokenOrigin: "the Kubernetes Job's name",
    };
  }
  return undefined;
}

/** The first host of a SLURM host list (`node[01-03,07],gpu5` gives `node01`). */
export function firstHost(list: string): string {
  return expandHostlist(list, 1)[0] ?? list;
}

/**
 * Expands a SLURM compressed host list: comma-separated names, each with any number of bracketed
 * ranges (`rack[1-2]-n[01-02]`), zero padding kept. Stops after `limit` names.
 */
export function expandHostlist(list: string, limit = Infinity): string[] {
  const out: string[] = [];
  for (const item of splitTop(list)) {
    for (const name of expandOne(item)) {
      out.push(name);
      if (out.length >= limit) return out;
    }
  }
  return out;
}

/** Splits at commas outside brackets. */
function splitTop(list: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of list.trim()) {
    if (ch === "[") depth++;
    if (ch === "]") depth--;
    if (ch === "," && depth === 0) {
      if (cur) parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur) parts.push(cur);
  return parts;
}

function* expandOne(item: string): Generator<string> {
  const open = item.indexOf("[");
  if (open < 0) {
    yield item;
    return;
  }
  const close = item.indexOf("]", open);
  if (close < 0) {
    yield item;
    return;
  }
  const head = item.slice(0, open);
  const tail = item.slice(close + 1);
  for (const range of item.slice(open + 1, close).split(",")) {
    const [lo, hi] = range.split("-");
    const width = lo.length;
    const a = Number(lo), b = hi === undefined ? a : Number(hi);
    if (!Number.isInteger(a) || !Number.isInteger(b)) {
      yield* expandOne(head + range + tail);
      continue;
    }
    for (let n = a; n <= b; n++) {
      for (const rest of expandOne(tail)) yield head + String(n).padStart(width, "0") + rest;
    }
  }
}
