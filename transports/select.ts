/**
 * @module
 * Chooses and builds the transport of a group: ranks publish their host ids through the store;
 * same-host peers talk over shared memory, the others over TCP (or one kind, when forced).
 */

import { InvalidArgumentError, PermissionError } from "../errors.ts";
import { hostId, UNKNOWN } from "./host_id.ts";
import { RoutedTransport } from "./routed.ts";
import { ShmTransport } from "./shm/transport.ts";
import { PrefixStore, type Store } from "./store/mod.ts";
import { gatherAt } from "./store/all_gather.ts";
import type { Gathered } from "./store/store.ts";
import { TcpTransport } from "./tcp/transport.ts";
import type { Transport } from "./transport.ts";
import { UcxTransport } from "./ucx/transport.ts";
import { type SegmentSource, WorkerTransport } from "./worker/transport.ts";
import type { SegmentSpec } from "./worker/segment.ts";

/** What a group's transport is built from. */
export interface SelectOptions {
  /** `auto` (default): shm between same-host ranks, tcp across hosts; or force `tcp`, `shm` or `ucx`. */
  kind?: string;
  /** This rank. */
  rank: number;
  /** Number of ranks. */
  size: number;
  /** The job's store (a per-group prefix is added here). */
  store: Store;
  /** The job token. */
  token: string;
  /** Connection and wait timeout, ms. */
  timeoutMs: number;
  /** Group id, carried in TCP handshakes and shm segment names (default 0, the world). */
  group?: number;
  /** CHOIR_HOST_ID override of this process's host identity. */
  hostIdOverride?: string;
  /** The job id, part of shared-memory segment names. */
  jobId?: string;
  /** CRC32C of every TCP payload (`CHOIR_CHECKSUM=1`). */
  checksum?: boolean;
  /** Address TCP listeners bind to. */
  bind?: string;
  /** Address peers dial for TCP, when it differs from `bind`. */
  advertise?: string;
  /** Worker ranks (kind `worker`): where the group's shared memory comes from. */
  segments?: SegmentSource;
  /** Worker ranks: ring and arena sizes of the group's memory (default as for shm). */
  segmentSpec?: Omit<SegmentSpec, "size">;
  /** The group opens its links lazily: either rank of a TCP pair may dial, on first use. */
  lazy?: boolean;
}

/**
 * The host of every rank: the distinct host ids and each rank's index into them, exchanged through the
 * store (one request per rank on the TCP store). Compact on purpose: a rank of an N-rank job holds one
 * Int32Array, not N strings.
 */
function exchangeHostIds(
  store: Store,
  rank: number,
  size: number,
  mine: string,
  timeoutMs: number,
): Promise<Gathered> {
  return gatherAt(store, { tag: "host", rank, size, value: mine }, timeoutMs);
}

/**
 * One frozen host list per decoded table (gatherAt returns the same object for the same table), so that
 * what is derived from it (the plan's shape, the hierarchical sub-groups) is computed once per process,
 * not once per rank or group of it.
 */
const hostLists = new WeakMap<Gathered, readonly number[]>();

function hostListOf(hosts: Gathered): readonly number[] {
  let list = hostLists.get(hosts);
  if (list === undefined) hostLists.set(hosts, list = Object.freeze(Array.from(hosts.index)));
  return list;
}

/** A group's transport, and the host of every rank (index into the distinct host ids). */
export interface Selected {
  /** The transport to build the group on. */
  transport: Transport;
  /** Host index of every rank, in rank order (shared by the groups over the same table: read-only). */
  hostOf: readonly number[];
}

/** Builds the transport for this rank according to `o.kind` and where the ranks live. */
export async function selectTransport(o: SelectOptions): Promise<Selected> {
  const kind = o.kind ?? "auto";
  if (kind === "worker") return { transport: await workerTransport(o), hostOf: new Array(o.size).fill(0) };
  if (kind !== "auto" && kind !== "tcp" && kind !== "shm" && kind !== "ucx") {
    throw new InvalidArgumentError(`CHOIR_TRANSPORT must be auto, tcp, shm, ucx or worker, not "${kind}"`, {
      rank: o.rank,
      op: "initProcessGroup",
    });
  }
  const tcp = () =>
    TcpTransport.create({
      rank: o.rank,
      size: o.size,
      store: new PrefixStore("tcp/", o.store),
      token: o.token,
      checksum: o.checksum,
      timeoutMs: o.timeoutMs,
      group: o.group,
      hostname: o.bind,
      advertise: o.advertise,
      eitherDials: o.lazy,
    });
  const hosts = o.size === 1
    ? { values: [""], index: new Int32Array(1) }
    : await exchangeHostIds(o.store, o.rank, o.size, hostId(o.hostIdOverride), o.timeoutMs);
  const hostOf = hostListOf(hosts);
  if (kind === "tcp" || o.size === 1) return { transport: await tcp(), hostOf };
  if (kind === "ucx") {
    // UCX picks its own wires per peer (shared memory, CMA, TCP, verbs) as UCX_TLS allows.
    const transport = await UcxTransport.create({
      rank: o.rank,
      size: o.size,
      store: new PrefixStore("ucx/", o.store),
      token: o.token,
      timeoutMs: o.timeoutMs,
      group: o.group,
      hostIdOverride: o.hostIdOverride,
    });
    return { transport, hostOf };
  }

  const myHost = hosts.index[o.rank];
  const local: number[] = [];
  for (let r = 0; r < o.size; r++) if (hosts.index[r] === myHost) local.push(r);
  if (kind === "shm" && local.length !== o.size && hosts.values[myHost].startsWith(UNKNOWN)) {
    throw new PermissionError(
      "CHOIR_TRANSPORT=shm: this process cannot tell which host it is on, so it cannot find its same-host peers",
      "--allow-ffi",
      { rank: o.rank, op: "initProcessGroup" },
    );
  }
  if (kind === "shm" && local.length !== o.size) {
    const away = hostOf.flatMap((h, r) => (h === myHost ? [] : [r]));
    throw new InvalidArgumentError(
      `CHOIR_TRANSPORT=shm needs every rank on one host; ranks ${away.join(", ")} are on other hosts`,
      { rank: o.rank, op: "initProcessGroup" },
    );
  }
  const shm = () =>
    ShmTransport.create({
      rank: local.indexOf(o.rank),
      size: local.length,
      store: new PrefixStore(`shm/${local[0]}/`, o.store),
      token: o.token,
      timeoutMs: o.timeoutMs,
      jobId: o.jobId,
      group: o.group,
    });
  if (local.length === o.size) return { transport: await shm(), hostOf };
  // Several hosts: every rank runs TCP (to reach the other hosts), plus shm among its host's ranks.
  const all = Array.from({ length: o.size }, (_, r) => r);
  const t = await tcp();
  if (local.length === 1) return { transport: t, hostOf };
  const routes = [{ transport: await shm(), ranks: local }, { transport: t, ranks: all }];
  return { transport: new RoutedTransport(o.rank, o.size, routes), hostOf };
}

/** Worker ranks of one process: the group's memory comes from the hub (spawnWorkers). */
function workerTransport(o: SelectOptions): Promise<WorkerTransport> {
  if (!o.segments) {
    throw new InvalidArgumentError("transport worker needs Worker ranks started by spawnWorkers()", {
      rank: o.rank,
      op: "initProcessGroup",
    });
  }
  return WorkerTransport.create({
    ...o.segmentSpec,
    rank: o.rank,
    size: o.size,
    segments: o.segments,
    key: `g${o.group ?? 0}`,
    timeoutMs: o.timeoutMs,
  });
}
