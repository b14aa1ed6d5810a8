/**
 * @module
 * The commit vote that makes a step all-or-nothing. After its gradient allreduce each member of the
 * quorum votes; one decision per (quorum, step) is written to the store with compare-and-set, so the
 * first proposal wins and every member reads the same one: `commit` when every member voted ok (the
 * last to vote proposes it, `grow` instead when a member saw newcomers waiting), `abort` as soon as any member failed,
 * was reported lost, or the wait timed out. An allreduce can complete on some ranks and fail on others
 * (a rank dies after sending its share); a vote among the ranks alone could then disagree, a
 * decision in a store that outlives them cannot. Who counts as lost is replica_group.ts's business.
 */

import type { Store } from "../../transports/store/store.ts";

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
  /** This member saw newcomers waiting: a commit becomes `grow` (one member is enough). */
  grow: boolean;
  /** Resolves when a member of the quorum is reported lost: propose `abort` then. */
  lost: Promise<void>;
  /** How long to wait for the others' votes before proposing `abort`, in ms. */
  timeoutMs: number;
}

const dec = new TextDecoder();
/** Added to the vote count by a member that saw newcomers waiting (far above any quorum's size). */
const GROW = 1 << 24;

/** The key of the decision of `step` in `quorum`. */
export const voteKey = (quorum: number, step: number): string => `vote/${quorum}/${step}`;

/**
 * Votes and returns the quorum's decision for the step (the same on every member). The long-poll for
 * the decision goes out with the vote, so a member learns it one round trip after it is made; the
 * member whose vote completes the count makes it with one more round trip.
 */
export async function commitVote(o: VoteOptions): Promise<Verdict> {
  const key = voteKey(o.quorum, o.step);
  const propose = async (v: Verdict) => dec.decode(await o.store.compareSet(key, "", v)) as Verdict;
  if (!o.ok) return await propose("abort");
  // The long-poll returns once anyone decides, including this member's own proposal below.
  const decided = o.store.get(key).then((b) => dec.decode(b) as Verdict);
  decided.catch(() => {}); // a proposal below answers first, or the store fails both ways
  const votes = await o.store.add(`${key}/ok`, 1 + (o.grow ? GROW : 0));
  if (votes % GROW === o.size) return await propose(votes >= GROW ? "grow" : "commit");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const giveUp = new Promise<void>((r) => timer = setTimeout(r, o.timeoutMs));
  try {
    const first = await Promise.race([decided, o.lost.then(() => null), giveUp.then(() => null)]);
    return first ?? await propose("abort");
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
