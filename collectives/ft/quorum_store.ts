/**
 * @module
 * The quorum protocol of a fault-tolerant job, kept in the job's store (which must outlive any worker:
 * the launcher serves it): the first quorum of the founding replicas, newcomers that register and wait
 * to be admitted, and the next quorum agreed by the members of the last one once each has announced
 * itself or is known lost. Records are JSON under the `ft/` prefix. Opening the groups and watching
 * liveness is replica_group.ts's job.
 *
 * Keys: `start/<replica>` (a founder arrived), `q/<id>` (quorum record), `here/<id>/<replica>` (a
 * member of quorum id-1 announces itself for quorum id), `joiners` (counter) and `joiner/<slot>` (a
 * newcomer), `admit/<slot>` (the quorum that admitted it, or -1) and `done` (the job finished: the last
 * step). The per-step commit vote does not use the store (commit_vote.ts); a member whose vote broke off
 * announces the step it holds, and {@link nextRecord} makes it a newcomer when others committed more.
 */

import { RendezvousError, StoreTimeoutError } from "../../errors.ts";
import type { Store } from "../../transports/store/store.ts";

/** One quorum, as every member reads it from the store. */
export interface QuorumRecord {
  /** Quorum number: 0 for the founders, then one more at each re-forming. */
  id: number;
  /** Replica ids of the members, ascending: index = group rank. */
  members: number[];
  /** Members that do not hold the training state and must receive it from `source`. */
  newcomers: number[];
  /** Replica id of the member the state comes from (the lowest holder). */
  source: number;
  /** The committed steps the holders have made. */
  step: number;
  /** Newcomer slots up to this one (exclusive) have been admitted or refused. */
  joinedTo: number;
}

/** What a member of the last quorum says when it announces itself for the next. */
export interface Announcement {
  /** Committed steps it has made. */
  step: number;
  /** Whether it holds the training state of those steps. */
  synced: boolean;
}

const dec = new TextDecoder();

/** The record of quorum `id`'s key. */
export const recordKey = (id: number): string => `q/${id}`;
/** Where a member announces itself for quorum `id`. */
export const hereKey = (id: number, replica: number): string => `here/${id}/${replica}`;
/** Newcomer slot `slot` (1-based). */
export const joinerKey = (slot: number): string => `joiner/${slot}`;
/** The admission of newcomer slot `slot`. */
export const admitKey = (slot: number): string => `admit/${slot}`;
/** Counter of newcomer slots. */
export const JOINERS = "joiners";
/** Set when the job finished: the number of the last step. */
export const DONE = "done";

function parse<T>(bytes: Uint8Array): T {
  return JSON.parse(dec.decode(bytes)) as T;
}

/** Reads quorum `id`'s record (waiting for it as the store's get does). */
export async function readRecord(store: Store, id: number): Promise<QuorumRecord> {
  return parse<QuorumRecord>(await store.get(recordKey(id)));
}

/** Proposes `rec` as quorum `rec.id`; returns the record that won (the first proposal). */
export async function proposeRecord(store: Store, rec: QuorumRecord): Promise<QuorumRecord> {
  return parse<QuorumRecord>(await store.compareSet(recordKey(rec.id), "", JSON.stringify(rec)));
}

/**
 * The founders' quorum: every founder `0..count-1` marks its arrival, all wait for each other (naming
 * the ones missing after `timeoutMs`), and quorum 0 holds them all, replica 0 being the state's source.
 */
export async function formFirst(
  store: Store,
  me: number,
  count: number,
  timeoutMs: number,
): Promise<QuorumRecord> {
  await store.set(`start/${me}`, "1");
  const keys = Array.from({ length: count }, (_, r) => `start/${r}`);
  try {
    await store.wait(keys, timeoutMs);
  } catch (err) {
    if (!(err instanceof StoreTimeoutError)) throw err;
    const missing: number[] = [];
    for (let r = 0; r < count; r++) if (!(await store.check([keys[r]]))) missing.push(r);
    throw new RendezvousError(
      `replicas ${missing.join(", ")} of the ${count} founders never arrived within ${timeoutMs} ms`,
      { rank: me, op: "ReplicaGroup.join", cause: err },
    );
  }
  const members = Array.from({ length: count }, (_, r) => r);
  return await proposeRecord(store, {
    id: 0,
    members,
    newcomers: members.slice(1),
    source: 0,
    step: 0,
    joinedTo: 0,
  });
}

/** A newcomer registers; returns its slot, to be admitted at a quorum boundary. */
export async function registerJoiner(store: Store, me: number): Promise<number> {
  const slot = await store.add(JOINERS, 1);
  await store.set(joinerKey(slot), JSON.stringify({ replica: me }));
  return slot;
}

/** The newcomers registered after slot `from`: slot and replica id each (-1: a record that never came). */
export async function pendingJoiners(
  store: Store,
  from: number,
): Promise<{ slot: number; replica: number }[]> {
  const count = await store.add(JOINERS, 0);
  const out: { slot: number; replica: number }[] = [];
  for (let slot = from + 1; slot <= count; slot++) {
    out.push({ slot, replica: await joinerOf(store, slot) });
  }
  return out;
}

/** How long a newcomer's record may lag behind its slot (counted first, then written). */
const RECORD_LAG_MS = 2000;

/** The replica id of newcomer slot `slot`, or -1 when its record never came (it died in between). */
async function joinerOf(store: Store, slot: number): Promise<number> {
  try {
    await store.wait([joinerKey(slot)], RECORD_LAG_MS);
  } catch (e) {
    if (e instanceof StoreTimeoutError) return -1;
    throw e;
  }
  return parse<{ replica: number }>(await store.get(joinerKey(slot))).replica;
}

/**
 * Tells the newcomers of slots `(prev.joinedTo, rec.joinedTo]` where they stand: the quorum that admitted
 * them, or -1 (refused: their replica id is held by a live member, or their record came too late).
 * Idempotent: every member does it.
 */
export async function admitJoiners(store: Store, prevJoinedTo: number, rec: QuorumRecord): Promise<void> {
  for (let slot = prevJoinedTo + 1; slot <= rec.joinedTo; slot++) {
    const replica = await joinerOf(store, slot);
    const admitted = replica >= 0 && rec.newcomers.includes(replica) && rec.members.includes(replica);
    await store.compareSet(admitKey(slot), "", String(admitted ? rec.id : -1));
  }
}

/** Builds the next quorum's record from the announcements and the pending newcomers. */
export function nextRecord(
  id: number,
  here: ReadonlyMap<number, Announcement>,
  joiners: readonly { slot: number; replica: number }[],
  joinedTo: number,
): QuorumRecord | string {
  const holders = [...here].filter(([, a]) => a.synced);
  const step = holders.reduce((s, [, a]) => Math.max(s, a.step), -1);
  const newcomers = new Set([...here].filter(([, a]) => !a.synced || a.step < step).map(([r]) => r));
  for (const j of joiners) if (j.replica >= 0 && !here.has(j.replica)) newcomers.add(j.replica);
  const members = [...new Set([...here.keys(), ...newcomers])].sort((a, b) => a - b);
  const source = members.find((r) => !newcomers.has(r));
  if (source === undefined) {
    return `no live replica holds the training state (members ${members.join(", ")} are all newcomers)`;
  }
  // Before the first commit the founders' initial states may differ: they all take the source's.
  if (step === 0) { for (const r of members) if (r !== source) newcomers.add(r); }
  return { id, members, newcomers: [...newcomers].sort((a, b) => a - b), source, step, joinedTo };
}

/** Reads the announcements for quorum `id` of the replicas in `of` that made one. */
export async function announcements(
  store: Store,
  id: number,
  of: readonly number[],
): Promise<Map<number, Announcement>> {
  const out = new Map<number, Announcement>();
  for (const r of of) {
    if (await store.check([hereKey(id, r)])) out.set(r, parse<Announcement>(await store.get(hereKey(id, r))));
  }
  return out;
}

/** Announces this member for quorum `id`. */
export async function announce(store: Store, id: number, me: number, a: Announcement): Promise<void> {
  await store.set(hereKey(id, me), JSON.stringify(a));
}
