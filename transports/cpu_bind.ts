/**
 * @module
 * Binds a rank's thread to one CPU of those the process may use (mpirun's `--bind-to core`), through
 * libc's `sched_setaffinity` on the calling thread. Which rank gets which CPU is `localRank` modulo the
 * allowed CPUs; when to bind is left to `initProcessGroup` (`CHOIR_CPU_BIND`) and the launcher.
 *
 * Why: the same-host engines hand a call over in a few hundred nanoseconds, so a rank the scheduler
 * moves to the other core, or a core that ends up running three ranks while the other runs one, shows
 * as microseconds per call. V8's own threads started before the binding stay free to run anywhere.
 */

import { InvalidArgumentError, TransportError } from "../errors.ts";
import { errno, libc } from "./shm/libc.ts";

/** Where a rank's thread may run: `core` binds it to one CPU, `none` leaves it to the kernel. */
export type CpuBind = "core" | "none";

/** Bytes of the CPU masks asked for and set: room for 1,024 CPUs (glibc's `cpu_set_t`). */
const MASK_BYTES = 128;

/** Whether `v` names a {@link CpuBind} mode. */
export function isCpuBind(v: unknown): v is CpuBind {
  return v === "core" || v === "none";
}

/**
 * Checks a `CHOIR_CPU_BIND` or `--bind-to` value (named `source` in the error, raised for `op`);
 * undefined stays undefined (not set).
 */
export function parseCpuBind(raw: string | undefined, source: string, op = "init"): CpuBind | undefined {
  if (raw === undefined || isCpuBind(raw)) return raw;
  throw new InvalidArgumentError(`${source} must be "core" or "none", got ${JSON.stringify(raw)}`, { op });
}

/** The CPUs the calling thread may run on, ascending (its affinity mask). */
export function allowedCpus(): number[] {
  const lib = libc();
  const mask = new Uint8Array(MASK_BYTES);
  if (lib.fn.sched_getaffinity(0, BigInt(MASK_BYTES), mask) !== 0) {
    throw new TransportError(`sched_getaffinity failed: errno ${errno(lib)}`, { op: "init" });
  }
  const cpus: number[] = [];
  for (let i = 0; i < MASK_BYTES * 8; i++) if (mask[i >> 3] & (1 << (i & 7))) cpus.push(i);
  return cpus;
}

/**
 * Binds the calling thread to the `localRank`-th CPU it may use (modulo their number, so ranks beyond
 * the CPUs share them evenly) and returns that CPU. Threads it starts later inherit the binding.
 */
export function bindToCore(localRank: number): number {
  const cpus = allowedCpus();
  if (cpus.length === 0) throw new TransportError("no CPU allowed to bind to", { op: "init" });
  const cpu = cpus[localRank % cpus.length];
  const mask = new Uint8Array(MASK_BYTES);
  mask[cpu >> 3] |= 1 << (cpu & 7);
  const lib = libc();
  if (lib.fn.sched_setaffinity(0, BigInt(MASK_BYTES), mask) !== 0) {
    throw new TransportError(`binding local rank ${localRank} to CPU ${cpu} failed: errno ${errno(lib)}`, {
      op: "init",
    });
  }
  return cpu;
}
