/**
 * @module
 * The first failure of a group, shared through the job's store so that every survivor names the same
 * cause. When rank 1 dies, rank 0 sees its socket close and closes its own channels; without this, rank
 * 2 would then blame rank 0. The first rank to fail records its error (first writer wins) before it
 * closes anything, so a rank that fails later because of that closing finds the real cause there.
 */

import { type ChoirError, PeerLostError, TransportError } from "../errors.ts";
import type { Store } from "../transports/store/store.ts";

const KEY = "failure/first";
/** How long a failing rank spends on the store at most (the store may have died with its host). */
const STORE_MS = 1000;

/** What the store keeps about the first failure. */
interface Cause {
  /** Error class name. */
  kind: string;
  /** The rank that detected it. */
  detector: number;
  /** The rank it blamed (the peer it lost), if any. */
  culprit?: number;
  /** The op it was running. */
  op?: string;
  /** Its message. */
  message: string;
}

/**
 * Records `err` as the group's first failure unless one is already recorded, and returns the error this
 * rank should report: `err` itself, or, when an earlier rank already lost a peer and this rank merely
 * saw the consequences (a connection closed by a rank that was shutting down), a PeerLostError naming
 * the rank that was really lost.
 */
export async function settleCause(
  store: Store | undefined,
  rank: number,
  err: ChoirError,
): Promise<ChoirError> {
  if (!store) return err;
  const mine: Cause = { kind: err.name, detector: rank, culprit: err.peer, op: err.op, message: err.message };
  const enc = new TextEncoder().encode(JSON.stringify(mine));
  let held: Uint8Array;
  try {
    held = await bounded(store.compareSet(KEY, "", enc));
  } catch {
    return err; // no store to share through: report what this rank saw
  }
  let first: Cause;
  try {
    first = JSON.parse(new TextDecoder().decode(held)) as Cause;
  } catch {
    return err;
  }
  const secondary = err instanceof PeerLostError || err instanceof TransportError;
  if (
    first.detector === rank || !secondary || first.kind !== "PeerLostError" || first.culprit === undefined ||
    first.culprit === err.peer || first.culprit === rank
  ) {
    return err;
  }
  return new PeerLostError(
    `rank ${first.culprit} was lost (rank ${first.detector} saw it during ${first.op ?? "an op"}); ` +
      `here it showed as: ${err.message}`,
    { rank, op: err.op, peer: first.culprit, cause: err },
  );
}

function bounded<T>(p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("store did not answer")), STORE_MS);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}
