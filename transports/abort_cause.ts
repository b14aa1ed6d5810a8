/**
 * @module
 * The cause a failing rank sends its peers in-band, over the transport itself, just before it closes
 * its links: what failed (the error kind), whom it blames, the op, and for a mismatch both
 * fingerprints. A survivor reports that root cause as its own error instead of "lost the connection to
 * the rank that told me", whether or not the job's store still answers. Encoding only; sending it is
 * each transport's (a frame on TCP, a slot in the shared segment).
 */

import {
  AbortedError,
  ChoirError,
  CollectiveMismatchError,
  CollectiveTimeoutError,
  DataCorruptionError,
  PeerLostError,
  RendezvousError,
} from "../errors.ts";

/** The largest encoded cause a receiver accepts (a longer one is cut: messages are for people). */
export const MAX_CAUSE_BYTES = 4096;

/** What travels (and what a failing rank records in the store, `failure_cause.ts`). */
export interface CauseRecord {
  /** Error class name. */
  kind: string;
  /** The rank that sends it (failed). */
  from: number;
  /** The rank it blames, if any. */
  culprit?: number;
  /** The op it was running. */
  op?: string;
  /** Its message. */
  message: string;
  /** For a mismatch: the fingerprint the sender expected and the one it received. */
  expected?: Record<string, number | string>;
  /** See {@link CauseRecord.expected}. */
  received?: Record<string, number | string>;
}

/** The record of `err` as rank `from` saw it. */
export function causeRecord(err: Error, from: number): CauseRecord {
  const c = err instanceof ChoirError ? err : undefined;
  const rec: CauseRecord = {
    kind: err.name,
    from,
    culprit: c?.peer,
    op: c?.op,
    message: err.message.slice(0, 1024),
  };
  if (err instanceof CollectiveMismatchError) {
    rec.expected = { ...err.expected };
    rec.received = { ...err.received };
  }
  return rec;
}

/** `err`, as rank `from` sends it to its peers. */
export function encodeCause(err: Error, from: number): Uint8Array {
  const rec = causeRecord(err, from);
  const bytes = new TextEncoder().encode(JSON.stringify(rec));
  return bytes.byteLength <= MAX_CAUSE_BYTES
    ? bytes
    : encodeCause(new PeerLostError(rec.message.slice(0, 256)), from);
}

/**
 * The error rank `rank` reports for a cause its peer sent (null when the bytes are not a cause). A
 * peer that lost a rank makes this rank report that rank lost; a mismatch between the peer and this
 * rank is reported from this side (what this rank ran, what the peer ran); any other failure of the
 * peer (a timeout, an abort, a mismatch elsewhere) is reported as what it was, naming the peer.
 */
export function decodeCause(bytes: Uint8Array, rank: number, op: string): ChoirError | null {
  let rec: CauseRecord;
  try {
    rec = JSON.parse(new TextDecoder().decode(bytes)) as CauseRecord;
  } catch {
    return null;
  }
  if (
    typeof rec !== "object" || rec === null || typeof rec.kind !== "string" || typeof rec.from !== "number"
  ) {
    return null;
  }
  const from = rec.from;
  const said = `rank ${from} ${rec.op ? `(in ${rec.op}) ` : ""}reported: ${rec.message}`;
  switch (rec.kind) {
    case "CollectiveMismatchError":
      if (rec.expected && rec.received) {
        if (rec.culprit === rank || rec.culprit === undefined) {
          // What this rank sent was not what the peer expected: this side's view is the mirror.
          return new CollectiveMismatchError(rec.received, rec.expected, { rank, op, peer: from });
        }
        return new CollectiveMismatchError(rec.expected, rec.received, { rank, op, peer: rec.culprit });
      }
      break;
    case "CollectiveTimeoutError":
      return new CollectiveTimeoutError(`a collective timed out on ${said}`, 0, { rank, op, peer: from });
    case "AbortedError":
      return new AbortedError(`${said}`, { rank, op, peer: from });
    case "DataCorruptionError":
      return new DataCorruptionError(`${said}`, { rank, op, peer: rec.culprit ?? from });
    case "RendezvousError":
      // About the whole job (a rank two processes claimed): every rank reports it as it was found.
      return new RendezvousError(rec.message.replace(/^\[[^\]]*\] /, ""), {
        rank,
        op: rec.op,
        peer: rec.culprit,
      });
  }
  if (rec.culprit !== undefined && rec.culprit !== rank && rec.kind === "PeerLostError") {
    return new PeerLostError(`rank ${rec.culprit} was lost; ${said}`, { rank, op, peer: rec.culprit });
  }
  return new PeerLostError(`rank ${from} failed; it ${said.slice(`rank ${from} `.length)}`, {
    rank,
    op,
    peer: from,
  });
}
