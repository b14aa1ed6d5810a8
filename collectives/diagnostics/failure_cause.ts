/**
 * @module
 * Finding the rank that really failed when a group breaks. When rank 2 dies, its neighbours see its
 * links close and close their own links as they give up, so other ranks see *those* ranks go away and
 * would blame them. Every failing rank records whom it blames in the job's store; a rank whose suspect
 * recorded a failure of its own (so it is alive) follows that rank's blame instead, hop by hop, until
 * it reaches a rank that recorded nothing: the one that died. A rank on the way that recorded a
 * RendezvousError stopped because the job itself is wrong (a rank two processes claimed): that verdict
 * is the one to report.
 */

import {
  type ChoirError,
  CollectiveMismatchError,
  PeerLostError,
  RendezvousError,
  StoreTimeoutError,
  TransportError,
} from "../../errors.ts";
import type { Store } from "../../transports/store/store.ts";
import { type CauseRecord, causeRecord } from "../../transports/abort_cause.ts";

/** How long a live suspect has to record its own failure before it is taken for the culprit. */
const WAIT_MS = 400;
/** How long a failing rank spends on each store call at most (the store may have died with its host). */
const STORE_MS = 1000;

/** What a failing rank records under `failure/<rank>`: the record it also sends its peers in-band. */
type FailureRecord = CauseRecord;

const key = (r: number) => `failure/${r}`;

/**
 * Records `err` for this rank and returns the error it should report: `err` itself, or, when the
 * rank it blames is alive and failing too (it only closed its links), a PeerLostError naming the rank
 * at the end of the blame chain, or the RendezvousError a rank on the chain stopped with.
 */
export async function settleCause(
  store: Store | undefined,
  rank: number,
  err: ChoirError,
): Promise<ChoirError> {
  if (!store) return err;
  const mine = causeRecord(err, rank);
  try {
    await bounded(store.set(key(rank), JSON.stringify(mine)));
    if (err.peer === undefined || !(err instanceof PeerLostError || err instanceof TransportError)) {
      return err;
    }
    const seen = new Set([rank]);
    let suspect = err.peer;
    let via: FailureRecord | undefined;
    while (true) {
      seen.add(suspect);
      const theirs = await recordOf(store, suspect);
      if (theirs?.expected && theirs.received && theirs.culprit === rank && suspect === err.peer) {
        // The peer closed because what this rank sent was not what it expected: report the mismatch
        // here too, from this side (what this rank ran, what the peer ran).
        return new CollectiveMismatchError(theirs.received, theirs.expected, {
          rank,
          op: err.op,
          peer: suspect,
          cause: err,
        });
      }
      if (theirs?.kind === "RendezvousError") {
        // The job's membership is wrong: every rank reports that, not the links it broke.
        return new RendezvousError(theirs.message.replace(/^\[[^\]]*\] /, ""), {
          rank,
          op: err.op,
          peer: theirs.culprit === rank ? undefined : theirs.culprit,
          cause: err,
        });
      }
      if (!theirs || theirs.culprit === undefined) break; // it recorded nothing: it is the one
      if (seen.has(theirs.culprit)) return err; // ranks blaming each other: no better answer
      via = theirs;
      suspect = theirs.culprit;
    }
    if (suspect === err.peer) return err;
    return new PeerLostError(
      `rank ${suspect} was lost (${via?.op ?? "an op"} saw: ${via?.message ?? "?"}); ` +
        `here it showed as: ${err.message}`,
      { rank, op: err.op, peer: suspect, cause: err },
    );
  } catch {
    return err; // no store to share through: report what this rank saw
  }
}

/** The failure `r` recorded, waiting up to {@link WAIT_MS} for it (one long-poll); undefined if none came. */
async function recordOf(store: Store, r: number): Promise<FailureRecord | undefined> {
  try {
    const [value] = await bounded(store.multiGet([key(r)], WAIT_MS));
    return JSON.parse(new TextDecoder().decode(value)) as FailureRecord;
  } catch (err) {
    if (err instanceof StoreTimeoutError || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

function bounded<T>(p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("store did not answer")), STORE_MS);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}
