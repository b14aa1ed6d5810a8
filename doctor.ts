/**
 * @module
 * `deno task doctor`: what this machine and this process can run, and why not where not: Deno and the
 * host, the permissions granted, shared memory, OpenBLAS, UCX and RDMA devices, the CUDA driver, GPUs
 * and cuBLAS, the scheduler and the choir environment. {@link environmentReport} returns it typed;
 * run as a program it prints a table (`--json` for JSON). It only looks: nothing is changed or chosen.
 */

import { parseArgs } from "node:util";
import { readEnv } from "./config.ts";
import { hostId } from "./transports/host_id.ts";
import { ucxAvailability } from "./transports/ucx/lib.ts";
import { probeVerbs } from "./transports/ucx/devices.ts";
import { blasAvailable } from "./collectives/kernels/blas.ts";
import {
  cublas,
  cublasCandidates,
  cublasLibrary,
  cudaAvailable,
  deviceCount,
  deviceInfo,
  driverVersion,
} from "./gpu/mod.ts";

/** One thing checked: whether it is usable and a line saying what was found (or why not). */
export interface Finding {
  /** Usable here, by this process. */
  ok: boolean;
  /** What was found, or why it is missing and what to install or allow. */
  detail: string;
}

/** Everything {@link environmentReport} looked at. */
export interface EnvironmentReport {
  /** Deno's version, the OS and the architecture. */
  deno: string;
  /** Host name (when readable) and the host id same-host peers are found by. */
  host: { name: string; id: string; cores: number; memoryBytes: number | null };
  /** Deno permissions of this process, by name (`granted`, `prompt` or `denied`). */
  permissions: Record<string, string>;
  /** Cross-process shared memory (the shm transport and the arena collectives). */
  sharedMemory: Finding;
  /** OpenBLAS for f32/f64 SUM and scaling in place. */
  openblas: Finding;
  /** UCX's libucp (`CHOIR_TRANSPORT=ucx`). */
  ucx: Finding;
  /** RDMA devices through libibverbs. */
  rdma: Finding;
  /** The CUDA driver and its GPUs. */
  cuda: Finding & { devices: { ordinal: number; name: string; memoryBytes: number; ipc: boolean }[] };
  /** cuBLAS. */
  cublas: Finding;
  /** The job as the environment describes it (torchrun variables, a scheduler's, CHOIR_*). */
  job: Finding;
}

const PERMISSIONS = ["env", "net", "read", "write", "ffi", "run", "sys"] as const;

function permission(name: (typeof PERMISSIONS)[number]): string {
  try {
    return Deno.permissions.querySync({ name }).state;
  } catch {
    return "unknown";
  }
}

function attempt<T>(fn: () => T): { value: T } | { error: string } {
  try {
    return { value: fn() };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

function sharedMemory(ffi: boolean): Finding {
  if (!ffi) return { ok: false, detail: "needs --allow-ffi (shm_open and mmap through libc); ranks use TCP" };
  const st = attempt(() => Deno.statSync("/dev/shm"));
  if ("error" in st) return { ok: false, detail: `/dev/shm is not there (${st.error}); ranks use TCP` };
  return { ok: true, detail: "/dev/shm present, FFI allowed: same-host ranks use shared memory" };
}

function cudaFinding(ffi: boolean): EnvironmentReport["cuda"] {
  if (!ffi) return { ok: false, detail: "needs --allow-ffi", devices: [] };
  if (!cudaAvailable()) {
    return {
      ok: false,
      detail:
        "no CUDA driver with a device (libcuda.so.1 from the NVIDIA driver did not load, or sees no GPU)",
      devices: [],
    };
  }
  const devices = Array.from({ length: deviceCount() }, (_, i) => {
    const d = deviceInfo(i);
    return { ordinal: i, name: d.name, memoryBytes: d.totalMemory, ipc: d.ipc };
  });
  return { ok: true, detail: `driver ${driverVersion()}, ${devices.length} device(s)`, devices };
}

function cublasFinding(cuda: boolean): Finding {
  const where = attempt(() => cublasLibrary());
  if ("error" in where) {
    return { ok: false, detail: `${where.error}` + (cublasCandidates().length ? "" : " (no candidates)") };
  }
  if (!cuda) return { ok: false, detail: `${where.value} found, but there is no GPU to use it on` };
  const v = attempt(() => cublas(0).version());
  return "error" in v
    ? { ok: false, detail: `${where.value}: ${v.error}` }
    : { ok: true, detail: `${where.value}, version ${v.value}` };
}

function jobFinding(envAllowed: boolean): Finding {
  if (!envAllowed) return { ok: false, detail: "needs --allow-env (RANK, WORLD_SIZE, MASTER_ADDR, ...)" };
  const env = attempt(() => readEnv());
  if ("error" in env) return { ok: false, detail: env.error };
  const e = env.value;
  if (e.rank === undefined || e.worldSize === undefined) {
    return {
      ok: false,
      detail: "not inside a job: RANK and WORLD_SIZE are unset and no scheduler (SLURM, Open MPI, PMI, " +
        "Kubernetes) was found (start ranks with `deno task launch`)",
    };
  }
  const parts = [
    `rank ${e.rank} of ${e.worldSize}`,
    e.localRank !== undefined ? `local rank ${e.localRank}` : "",
    e.scheduler ? `from ${e.scheduler}` : "from RANK/WORLD_SIZE",
    e.masterAddr ? `store ${e.masterAddr}:${e.masterPort ?? "?"}` : "",
    e.transport ? `CHOIR_TRANSPORT=${e.transport}` : "",
  ];
  return { ok: true, detail: parts.filter((p) => p).join(", ") };
}

/** Looks at this machine and process; never throws (what fails is reported). */
export function environmentReport(): EnvironmentReport {
  const permissions = Object.fromEntries(PERMISSIONS.map((p) => [p, permission(p)]));
  const ffi = permissions.ffi === "granted";
  const name = attempt(() => Deno.hostname());
  const mem = attempt(() => Deno.systemMemoryInfo().total);
  const ucx = ffi ? ucxAvailability() : { ok: false as const, reason: "needs --allow-ffi" };
  const verbs = ffi ? probeVerbs() : { devices: [], summary: "needs --allow-ffi" };
  const cuda = cudaFinding(ffi);
  const id = attempt(() => hostId(readEnv().hostId));
  return {
    deno: `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}), ${Deno.build.os} ${Deno.build.arch}`,
    host: {
      name: "value" in name ? name.value : `unreadable (${name.error})`,
      id: "value" in id ? id.value : `unknown (${id.error})`,
      cores: navigator.hardwareConcurrency || 1,
      memoryBytes: "value" in mem ? mem.value : null,
    },
    permissions,
    sharedMemory: sharedMemory(ffi),
    openblas: ffi
      ? blasAvailable()
        ? { ok: true, detail: "libopenblas.so.0: f32/f64 SUM and AVG reduce through cblas_?axpy" }
        : { ok: false, detail: "libopenblas.so.0 not found (Debian: libopenblas0); WASM/JS kernels are used" }
      : { ok: false, detail: "needs --allow-ffi; WASM/JS kernels are used" },
    ucx: ucx.ok ? { ok: true, detail: `libucp ${ucx.version}` } : { ok: false, detail: ucx.reason },
    rdma: { ok: verbs.devices.length > 0, detail: verbs.summary },
    cuda,
    cublas: ffi ? cublasFinding(cuda.ok) : { ok: false, detail: "needs --allow-ffi" },
    job: jobFinding(permissions.env === "granted"),
  };
}

function render(r: EnvironmentReport): string {
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  // Long details (cuBLAS lists every place it looked) are cut here; --json has them whole.
  const cut = (t: string) => (t.length > 240 ? `${t.slice(0, 240)}... (--json for all)` : t);
  const row = (name: string, f: Finding) => `${f.ok ? "ok " : "-- "} ${name.padEnd(14)} ${cut(f.detail)}`;
  const lines = [
    `choir doctor: ${r.deno}`,
    `host ${r.host.name}, ${r.host.cores} cores${r.host.memoryBytes ? `, ${gib(r.host.memoryBytes)}` : ""}`,
    `permissions: ${Object.entries(r.permissions).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    "",
    row("shared memory", r.sharedMemory),
    row("OpenBLAS", r.openblas),
    row("UCX", r.ucx),
    row("RDMA", r.rdma),
    row("CUDA", r.cuda),
    ...r.cuda.devices.map((d) =>
      `      cuda:${d.ordinal} ${d.name}, ${gib(d.memoryBytes)}${d.ipc ? ", IPC" : ", no IPC"}`
    ),
    row("cuBLAS", r.cublas),
    row("job", r.job),
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { json: { type: "boolean" } } });
  const report = environmentReport();
  console.log(values.json ? JSON.stringify(report, null, 2) : render(report));
}
