/**
 * @module
 * The commit vote that makes a step all-or-nothing, as one tiny allreduce (MIN of four int32) over the
 * quorum's own group: a member commits only when it has read the result, and the result says that every
 * member voted ok on the same step, so no member ever applies a gradient that was not averaged over all.
 * The store is not touched. A member whose group is broken before it votes knows that nobody can commit
 * (its own ok is missing): `abort`. A member that voted ok but never read the result (a member died or
 * the group broke during the vote) cannot know whether some others read it and committed: `unknown`;
 * it does not apply the step, and the next quorum's record sorts it out (a member behind the others'
 * committed step receives their state before the next step, quorum_store.ts). Who counts as lost and
 * re-forming are replica_group.ts's business.
 */

import { ReduceOp } from "../../dtype.ts";

/** What one member learned of the quorum's decision on a step. */
export type Verdict = "commit" | "grow" | "abort" | "unknown";

/** The part of a ProcessGroup the vote uses. */
export interface VoteGroup {
  /** The error that broke the group, or null while it is sound. */
  readonly failure: unknown;
  /** Reduces `tensor` across the group in place (MIN here). */
  allReduce(tensor: Int32Array, opts: { op: ReduceOp }): Promise<void>;
}

/** What {@link commitVote} needs. */
export interface VoteOptions {
  /** The quorum's group. */
  pg: VoteGroup;
  /** The step voted on (every member must vote on the same one, else the step is aborted). */
  step: number;
  /** This member's vote: its step went through. */
  ok: boolean;
  /** This member saw newcomers waiting: a commit becomes `grow` (one member is enough). */
  grow: boolean;
}

/**
 * Votes and returns what this member learned: `commit` or `grow` when every member voted ok on the same
 * step (the same on every member that read the result), `abort` when one voted no or the steps
 * differed (likewise the same on all), or when this member could not vote at all; `unknown` when it
 * voted ok and the vote failed. Costs one allreduce of 16 bytes.
 */
export async function commitVote(o: VoteOptions): Promise<Verdict> {
  if (o.pg.failure !== null) return "abort";
  const step = o.step | 0;
  // MIN of each: every member ok, no member saw newcomers, the lowest step and the highest step agree.
  const v = Int32Array.of(o.ok ? 1 : 0, o.grow ? 0 : 1, step, -step);
  try {
    await o.pg.allReduce(v, { op: ReduceOp.MIN });
  } catch {
    return o.ok ? "unknown" : "abort";
  }
  if (v[0] !== 1 || v[2] !== step || -v[3] !== step) return "abort";
  return v[1] === 0 ? "grow" : "commit";
}
