/**
 * @module
 * Opens one group of a job: its members meet under the group's own store prefix, build a fresh
 * transport (new connections, a new shm segment) and get a connected ProcessGroup that can open
 * subgroups the same way. Creating the job's store is left to `initProcessGroup()`.
 */

import { joinBarrier, PrefixStore, type Store } from "../transports/store/mod.ts";
import { selectTransport } from "../transports/select.ts";
import { groupIdOf } from "./groups.ts";
import { ProcessGroup } from "./process_group.ts";
import type { Algorithm } from "./plan/plan.ts";
import type { SegmentSource } from "../transports/worker/transport.ts";
import type { SegmentSpec } from "../transports/worker/segment.ts";

/** What every group of one job is opened with. */
export interface JobContext {
  /** The job's store, without any group prefix. */
  readonly store: Store;
  /** The job token. */
  readonly token: string;
  /** Transport choice: `auto`, `tcp` or `shm` (default `auto`). */
  readonly transport?: string;
  /** Bytes per pipelined chunk of large messages. */
  readonly chunkBytes?: number;
  /** Address TCP listeners bind to. */
  readonly bind?: string;
  /** Address peers dial for TCP, when it differs from `bind`. */
  readonly advertise?: string;
  /** CHOIR_HOST_ID override of this process's host identity. */
  readonly hostIdOverride?: string;
  /** The job id, part of shared-memory segment names (so the launcher can sweep them). */
  readonly jobId?: string;
  /** Flight recorder entries per group (0: off). */
  readonly flightRecorder?: number;
  /** CRC32C of every TCP payload. */
  readonly checksum?: boolean;
  /** The algorithm every group forces where it applies (undefined: the plan chooses). */
  readonly algorithm?: Algorithm;
  /** Deterministic reductions in every group. */
  readonly deterministic?: boolean;
  /** Worker ranks: where each group's shared memory comes from (transport `worker`). */
  readonly segments?: SegmentSource;
  /** Worker ranks: ring and arena sizes of the world group's memory. */
  readonly worldSpec?: Omit<SegmentSpec, "size">;
}

/** Options of {@link openGroup}. */
export interface OpenGroupOptions {
  /** The job the group belongs to. */
  job: JobContext;
  /** The group's unique name in the job; its keys live under `tag/` in the job's store. */
  tag: string;
  /** Global rank of each member, in group-rank order. */
  ranks: readonly number[];
  /** This process's rank in the group. */
  rank: number;
  /** Default timeout of forming the group and of its operations, in ms. */
  timeoutMs: number;
  /** Called once when the group is destroyed (the world group closes the job's store here). */
  onDestroy?: () => Promise<void>;
}

/**
 * Opens the group `o.tag` over `o.ranks`: every member must call it with the same tag and ranks.
 * Throws RendezvousError naming the members that never arrived within the timeout.
 */
export async function openGroup(o: OpenGroupOptions): Promise<ProcessGroup> {
  const { job, rank, timeoutMs } = o;
  const size = o.ranks.length;
  const store = new PrefixStore(`${o.tag}/`, job.store);
  const group = groupIdOf(o.tag);
  // Everyone arrives first, so a missing member is named here rather than by a later store wait.
  await joinBarrier(new PrefixStore("join/", store), rank, size, timeoutMs);
  const { transport, hostOf } = await selectTransport({
    kind: job.transport,
    rank,
    size,
    store,
    token: job.token,
    timeoutMs,
    group,
    hostIdOverride: job.hostIdOverride,
    jobId: job.jobId,
    checksum: job.checksum,
    bind: job.bind,
    advertise: job.advertise,
    segments: job.segments,
    segmentSpec: o.tag === "pg0" ? job.worldSpec : undefined,
  });
  const pg = new ProcessGroup(transport, {
    timeoutMs,
    hostOf,
    store,
    group,
    chunkBytes: job.chunkBytes,
    jobId: job.jobId,
    flightRecorder: job.flightRecorder,
    algorithm: job.algorithm,
    deterministic: job.deterministic,
    globalRanks: o.ranks,
    tag: o.tag,
    onDestroy: o.onDestroy,
    subgroups: (spec) => openGroup({ job, ...spec }),
  });
  try {
    await pg.connect();
  } catch (e) {
    await transport.close();
    throw e;
  }
  return pg;
}
