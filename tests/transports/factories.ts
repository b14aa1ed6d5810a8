/**
 * @module
 * Builds a transport by name for the conformance suite. A new transport adds one line here and then
 * must pass tests/transports/conformance_test.ts unchanged.
 */

import { ShmTransport } from "../../transports/shm/transport.ts";
import type { Store } from "../../transports/store/mod.ts";
import { TcpTransport } from "../../transports/tcp/transport.ts";
import type { Transport } from "../../transports/transport.ts";
import { UcxTransport } from "../../transports/ucx/transport.ts";
import { ucxAvailability } from "../../transports/ucx/lib.ts";
import { type SegmentSource, WorkerTransport } from "../../transports/worker/transport.ts";

/** What every transport factory receives. */
export interface FactoryOptions {
  rank: number;
  size: number;
  store: Store;
  token: string;
  timeoutMs: number;
  /** Worker ranks only: where the group's shared memory comes from. */
  segments?: SegmentSource;
}

/** The transports the conformance suite runs over, between processes. */
export const TRANSPORTS = ["tcp", "shm", "ucx-tcp", "ucx-posix", "ucx-sysv"] as const;

/** Extra environment of a transport's rank processes (UCX reads UCX_TLS itself). */
export const TRANSPORT_ENV: Readonly<Record<string, Record<string, string>>> = {
  "ucx-tcp": { UCX_TLS: "tcp" },
  "ucx-posix": { UCX_TLS: "posix,self" },
  "ucx-sysv": { UCX_TLS: "sysv,cma,self" },
};

/** Why transport `name` cannot run here (a missing library), or null when it can. */
export function unavailable(name: string): string | null {
  if (!name.startsWith("ucx")) return null;
  const a = ucxAvailability();
  return a.ok ? null : a.reason;
}

/** The transports whose ranks are Workers of one process (started with spawnWorkers). */
export const WORKER_TRANSPORTS = ["worker"] as const;

/** Creates transport `name` for one rank. */
export function makeTransport(name: string, o: FactoryOptions): Promise<Transport> {
  switch (name) {
    case "tcp":
      return TcpTransport.create(o);
    case "shm":
      // Small rings, so that the suite's 1 MiB and 16 MiB frames wrap many times.
      return ShmTransport.create({ ...o, ringBytes: 256 << 10 });
    case "ucx-tcp":
    case "ucx-posix":
    case "ucx-sysv":
      return UcxTransport.create(o);
    case "worker":
      if (!o.segments) throw new Error("the worker transport runs in Worker ranks only");
      return WorkerTransport.create({ ...o, segments: o.segments, key: "conformance", ringBytes: 256 << 10 });
    default:
      throw new Error(`unknown transport ${name}`);
  }
}
