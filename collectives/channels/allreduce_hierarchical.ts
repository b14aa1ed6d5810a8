/**
 * @module
 * Hierarchical allreduce for jobs spanning hosts with the same number of ranks each: reduce-scatter
 * inside each host (fast local links), allreduce of each 1/L slice across hosts (one rank per host
 * and slice, so every inter-host link carries only its share), then allgather inside each host.
 *
 * Cost: 2(L-1) local steps of S/L, plus a ring over H hosts on S/L bytes: 2(H-1)/H * S/L * beta_net.
 */

import { type Call, type Comm, segment } from "../comm.ts";
import { type CpuTensor, sliceView } from "../../dtype.ts";
import { ringPass } from "./ring_pass.ts";

/** Group ids of the sub-contexts (the world group is 0); one per phase, so frames cannot mix. */
const LOCAL_RS_GROUP = 0x4c00_0001;
const CROSS_GROUP = 0x4c00_0002;
const LOCAL_AG_GROUP = 0x4c00_0003;

/** The three sub-contexts of a hierarchical allreduce, built once per group. */
export interface HierarchicalComms {
  /** This host's ranks, for the reduce-scatter. */
  localRs: Comm;
  /** The ranks with this rank's local index on every host. */
  cross: Comm;
  /** This host's ranks, for the allgather. */
  localAg: Comm;
}

/**
 * The sub-contexts for host layout `hostOf` (host index of every rank), or null when there is one
 * host or hosts hold different numbers of ranks (then a flat algorithm is used).
 */
export function hierarchicalComms(comm: Comm, hostOf: readonly number[]): HierarchicalComms | null {
  const layout = layoutOf(hostOf);
  if (layout === null) return null;
  const { hosts } = layout;
  const mine = layout.of.get(hostOf[comm.rank])!;
  const l = mine.indexOf(comm.rank);
  return {
    localRs: comm.sub(mine, LOCAL_RS_GROUP),
    cross: comm.sub(hosts.map((rs) => rs[l]), CROSS_GROUP),
    localAg: comm.sub(mine, LOCAL_AG_GROUP),
  };
}

/**
 * The layout by (frozen) host list: computed once for the groups of a process over the same hosts, where
 * selectTransport hands every rank of the process one frozen list.
 */
const byHostOf = new WeakMap<readonly number[], Layout | null>();

/** The ranks of each host, in order of their first rank, and each host's list by host index. */
interface Layout {
  hosts: readonly (readonly number[])[];
  of: ReadonlyMap<number, readonly number[]>;
}

/** The layout of `hostOf`, or null when there is one host or hosts hold different numbers of ranks. */
function layoutOf(hostOf: readonly number[]): Layout | null {
  const known = byHostOf.get(hostOf);
  if (known !== undefined) return known;
  const of = new Map<number, number[]>();
  hostOf.forEach((h, r) => {
    const rs = of.get(h);
    if (rs) rs.push(r);
    else of.set(h, [r]);
  });
  const hosts = [...of.values()];
  const ok = hosts.length >= 2 && hosts.every((rs) => rs.length === hosts[0].length);
  const out = ok ? { hosts, of } : null;
  if (Object.isFrozen(hostOf)) byHostOf.set(hostOf, out); // a list that cannot change under the cache
  return out;
}

/** Reduces `buf` across all ranks in place over the contexts of {@link hierarchicalComms}. */
export async function allReduceHierarchical(h: HierarchicalComms, call: Call, buf: CpuTensor): Promise<void> {
  const L = h.localRs.size;
  const H = h.cross.size;
  // 1. Inside the host: local rank l ends up owning slice l reduced over the host.
  await ringPass(h.localRs, call, buf, { steps: L - 1, shift: -1, reduceSteps: L - 1 });
  // 2. Across hosts: allreduce slice l among the ranks that own it.
  const [start, len] = segment(buf.length, L, h.localRs.rank);
  await ringPass(h.cross, call, sliceView(buf, start, len), {
    steps: 2 * (H - 1),
    shift: 0,
    reduceSteps: H - 1,
  });
  // 3. Inside the host again: every rank gathers the L reduced slices.
  await ringPass(h.localAg, call, buf, { steps: L - 1, shift: 0, reduceSteps: 0 });
}
