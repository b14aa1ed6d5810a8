/**
 * @module
 * Opens one group of a job: its members meet under the group's own store prefix, build a fresh
 * transport (new connections, a new shm segment) and get a connected ProcessGroup that can open
 * subgroups the same way. The world group also watches for a rank two processes claimed, and breaks
 * with that verdict on every rank. Creating the job's store is left to `initProcessGroup()`.
 */

import { type ChoirError, InvalidArgumentError, RendezvousError } from "../errors.ts";
import { hostName } from "../transports/host_id.ts";
import {
  type DuplicateWatch,
  joinBarrier,
  PrefixStore,
  type Store,
  watchDuplicateRanks,
} from "../transports/store/mod.ts";
import { selectTransport } from "../transports/select.ts";
import { groupIdOf } from "./groups.ts";
import { ProcessGroup } from "./process_group.ts";
import { settleCause } from "./diagnostics/failure_cause.ts";
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
  /** When groups open their links: `eager`, `lazy`, or `auto` (default: eager up to 16 ranks). */
  readonly connect?: string;
}

/** Groups up to this size connect every pair up front under `auto`; larger ones connect on first use. */
export const EAGER_CONNECT_MAX = 16;

/** Whether a group of `size` ranks opens its links lazily under the job's `connect` setting. */
export function connectsLazily(connect: string | undefined, size: number): boolean {
  if (connect === "lazy") return true;
  if (connect === "eager") return false;
  if (connect !== undefined && connect !== "auto") {
    throw new InvalidArgumentError(`CHOIR_CONNECT must be eager, lazy or auto, not "${connect}"`, {
      op: "initProcessGroup",
    });
  }
  return size > EAGER_CONNECT_MAX;
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
  /** Called when the group breaks, before its links close (the world group tells its heartbeat). */
  onBreak?: (cause: ChoirError) => Promise<void>;
  /**
   * Watch, for the group's whole life, for a rank that a second process claims (the world group of
   * processes started outside spawnWorkers): the group then breaks with that RendezvousError.
   */
  watchDuplicates?: boolean;
  /**
   * Told when each step of forming the group ends (`joined`: the join barrier; `transport`: host ids
   * exchanged and the transport listening; `connected`: the group ready). For the scale benchmark.
   */
  onPhase?: (phase: "joined" | "transport" | "connected") => void;
}

/**
 * Opens the group `o.tag` over `o.ranks`: every member must call it with the same tag and ranks.
 * Throws RendezvousError naming the members that never arrived within the timeout, or the rank two
 * processes claimed.
 */
export async function openGroup(o: OpenGroupOptions): Promise<ProcessGroup> {
  const { rank, timeoutMs } = o;
  const store = new PrefixStore(`${o.tag}/`, o.job.store);
  const join = new PrefixStore("join/", store);
  // Everyone arrives first, so a missing member (or a rank claimed twice) is named here rather than by
  // a later store wait.
  await joinBarrier(join, rank, o.ranks.length, timeoutMs, undefined, { host: hostName() });
  o.onPhase?.("joined");
  if (!o.watchDuplicates) return await build(o, store, o.onDestroy);
  // A process claiming a rank from now on (even after the job started) stops every rank. The watch
  // starts with the group's own (hang-report) subscription, in one held request: a claim made before
  // then is found by it at once, and a build that fails reads the verdict directly (below).
  const watch = watchDuplicateRanks(join, { rank, deferred: true });
  let verdict: RendezvousError | null = null;
  const onDestroy = async () => {
    watch.stop();
    // Rank 0 may serve the store: keep it a moment for the ranks still reading the verdict.
    if (rank === 0 && (verdict ?? (await watch.now().catch(() => null)))) {
      await new Promise((r) => setTimeout(r, Math.min(2000, timeoutMs / 2)));
    }
    await o.onDestroy?.();
  };
  let pg: ProcessGroup;
  try {
    pg = await untilDuplicate(build(o, store, onDestroy, () => verdict, watch.start), watch, o.ranks.length);
  } catch (e) {
    watch.stop();
    // A setup that failed because of a duplicate (a peer that gave up on it) reports the duplicate.
    if (!(e instanceof RendezvousError)) throw (await watch.now().catch(() => null)) ?? e;
    throw e;
  }
  void watch.found.then(async (err) => {
    verdict = err; // from now on every failing call of this group reports it
    // Every rank learns it (each polls about once a second) before any breaks its links.
    await watch.seen(o.ranks.length, Math.min(3000, timeoutMs));
    // Recorded too, for the ranks that never read it themselves (failure_cause.ts follows it).
    await settleCause(store, rank, err);
    await pg.abort(err).catch(() => {}); // closing links that are gone already
  });
  return pg;
}

/** The group built, or the duplicate rank found first (the group is then aborted once built). */
async function untilDuplicate(
  building: Promise<ProcessGroup>,
  watch: DuplicateWatch,
  size: number,
): Promise<ProcessGroup> {
  const r = await Promise.race([building.then((pg) => ({ pg })), watch.found.then((dup) => ({ dup }))]);
  if ("pg" in r) return r.pg;
  building.then((pg) => pg.abort(r.dup)).catch(() => {});
  await watch.seen(size, 1); // counted as having read it; no need to wait for the others
  throw r.dup;
}

/** Builds the group's transport and ProcessGroup and connects it; `built` is called once the group exists. */
async function build(
  o: OpenGroupOptions,
  store: Store,
  onDestroy: (() => Promise<void>) | undefined,
  verdict?: () => RendezvousError | null,
  built?: () => void,
): Promise<ProcessGroup> {
  const { job, rank, timeoutMs } = o;
  const size = o.ranks.length;
  const group = groupIdOf(o.tag);
  const lazy = connectsLazily(job.connect, size);
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
    lazy,
  });
  o.onPhase?.("transport");
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
    onDestroy,
    onBreak: o.onBreak,
    verdict,
    subgroups: (spec) => openGroup({ job, ...spec }),
    connect: lazy ? "lazy" : "eager",
  });
  built?.(); // in the same turn as the group's own subscriptions (see openGroup)
  try {
    await pg.connect();
  } catch (e) {
    await transport.close();
    throw e;
  }
  o.onPhase?.("connected");
  return pg;
}
