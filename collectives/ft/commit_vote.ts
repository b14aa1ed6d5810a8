/**
 * @module
 * The commit vote that makes a step all-or-nothing. After its gradient allreduce each member of the
 * quorum votes; one decision per (quorum, step) is written to the store with compare-and-set, so the
 * first proposal wins and every member reads the same one: `commit` when every member voted ok (the
 * last to vote proposes it, `grow` instead when newcomers wait), `abort` as soon as any member failed,
 * was reported lost, or the wait timed out. An allreduce can complete on some ranks and fail on others
 * (a rank dies after sending its share); a vote among the ranks alone could then disagree, a
 * decision in a store that outlives them cannot. Who counts as lost is replica_group.ts's business.
 */

import type { Store } from "../../transports/store/store.ts";
import { JOINERS } from "./quorum_store.ts";

/** What a quorum decided for one step. */
export type Verdict = "commit" | "grow" | "abort";

/** What {@link commitVote} needs. */
export interface VoteOptions {
  /** The job's ft store. */
  store: Store;
  /** Quorum number. */
  quorum: number;
  /** Number of members. */
  size: number;
  /** The step voted on. */
  step: number;
  /** This member's vote: its step went through. */
  ok: boolean;
  /** Newcomer slots already admitted (more than this registered: propose `grow`). */
  joinedTo: number;
  /** Resolves when a member of the quorum is reported lost: propose `abort` then. */
  lost: Promise<void>;
  /** How long to wait for the others' votes before proposing `abort`, in ms. */
  timeoutMs: number;
}

const dec = new TextDecoder();

/** The key of the decision of `step` in `quorum`. */
export const voteKey = (quorum: number, step: number): string => `vote/${quorum}/${step}`;

/** Votes and returns the quorum's decision for the step (the same on every member). */
export async function commitVote(o: VoteOptions): Promise<Verdict> {
  const key = voteKey(o.quorum, o.step);
  const propose = async (v: Verdict) => dec.decode(await o.store.compareSet(key, "", v)) as Verdict;
  if (!o.ok) return await propose("abort");
  const votes = await o.store.add(`${key}/ok`, 1);
  if (votes === o.size) {
    const waiting = (await o.store.add(JOINERS, 0)) > o.joinedTo;
    return await propose(waiting ? "grow" : "commit");
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const giveUp = new Promise<void>((r) => timer = setTimeout(r, o.timeoutMs));
  try {
    // The long-poll returns once anyone decides, including this member's own abort below.
    const decided = o.store.get(key).then((b) => dec.decode(b) as Verdict);
    const first = await Promise.race([decided, o.lost.then(() => null), giveUp.then(() => null)]);
    if (first !== null) return first;
    const v = await propose("abort");
    decided.catch(() => {}); // answered by now, or failing with the store: nothing left to learn
    return v;
  } finally {
    clearTimeout(timer);
  }
}

/** Deletes the vote keys of `step` (every member has moved past it). */
export async function forgetVote(store: Store, quorum: number, step: number): Promise<void> {
  const key = voteKey(quorum, step);
  await store.deleteKey(`${key}/ok`);
  await store.deleteKey(key);
}
