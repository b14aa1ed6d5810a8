/**
 * @module
 * How the object collectives turn values into bytes and back: msgpackr with `moreTypes`, so typed
 * arrays, Maps, Sets, Dates and BigInts arrive as what was sent. Bounded both ways: a value is checked
 * before it is encoded (object_walk.ts) and its encoding capped; a peer's bytes are capped and checked
 * before they are decoded (object_scan.ts). Refusals are PayloadRefusedErrors. Moving the bytes is the
 * group's; a rank that refused its own object tells the others with a refusal code in the size round.
 *
 * Structured clone stays off (and is refused from peers): the object collectives carry plain data, and
 * msgpackr's clone mode is what lets bytes build cycles and shared references. RegExp and Error objects,
 * which msgpackr's `moreTypes` would rebuild from a peer's bytes, are refused on both sides.
 */

import { Packr } from "msgpackr/pack";
import {
  type ChoirError,
  InvalidArgumentError,
  type PayloadRefusal,
  PayloadRefusedError,
} from "../errors.ts";
import { DEFAULT_MAX_OBJECT_BYTES, MAX_OBJECT_DEPTH } from "../transports/limits.ts";
import { checkValue } from "./object_walk.ts";
import { scanPacked } from "./object_scan.ts";

// One encoder for the process: each message it writes is self-contained (no shared structures).
const packr = new Packr({ moreTypes: true, structuredClone: false });

/** The bounds of one object's encoding. */
export interface ObjectLimits {
  /** Largest encoding in bytes (default 64 MiB). */
  maxBytes?: number;
  /** Deepest nesting of containers (default 100). */
  maxDepth?: number;
}

/** The bytes of `value`; throws PayloadRefusedError (or InvalidArgumentError) naming `op` when refused. */
export function packObject(value: unknown, rank: number, op: string, limits: ObjectLimits = {}): Uint8Array {
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_OBJECT_BYTES;
  const ctx = { rank, op };
  const bad = checkValue(value, limits.maxDepth ?? MAX_OBJECT_DEPTH, maxBytes);
  if (bad) throw new PayloadRefusedError(`the object was refused: ${bad.detail}`, bad.reason, ctx);
  let bytes: Uint8Array;
  try {
    bytes = packr.pack(value);
  } catch (e) {
    throw new InvalidArgumentError(`cannot serialize the object: ${(e as Error).message}`, {
      ...ctx,
      cause: e,
    });
  }
  if (bytes.length > maxBytes) {
    throw new PayloadRefusedError(
      `the object was refused: it encodes into ${bytes.length} bytes, over the limit of ${maxBytes} (maxObjectBytes)`,
      "size",
      ctx,
    );
  }
  return bytes;
}

/**
 * The value encoded in `bytes` (sent by rank `from`); throws PayloadRefusedError when they are over the
 * cap, too deep, cyclic, hold a RegExp or Error or are not choir's encoding, InvalidArgumentError when
 * msgpackr cannot decode them.
 */
export function unpackObject<T>(
  bytes: Uint8Array,
  rank: number,
  op: string,
  from: number,
  limits: ObjectLimits = {},
): T {
  const ctx = { rank, op, peer: from };
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_OBJECT_BYTES;
  if (bytes.length > maxBytes) throw sizeRefusal(bytes.length, maxBytes, ctx);
  const bad = scanPacked(bytes, limits.maxDepth ?? MAX_OBJECT_DEPTH);
  if (bad) {
    throw new PayloadRefusedError(`the object from rank ${from} was refused: ${bad.detail}`, bad.reason, ctx);
  }
  try {
    return packr.unpack(bytes) as T;
  } catch (e) {
    throw new InvalidArgumentError(`cannot decode the object from rank ${from}: ${(e as Error).message}`, {
      ...ctx,
      cause: e,
    });
  }
}

/** The error of a size announced by rank `ctx.peer` over this rank's cap, raised before allocating. */
export function sizeRefusal(
  bytes: number,
  maxBytes: number,
  ctx: { rank: number; op: string; peer: number },
) {
  return new PayloadRefusedError(
    `the object from rank ${ctx.peer} was refused: ${bytes} bytes, over the limit of ${maxBytes} (maxObjectBytes)`,
    "size",
    ctx,
  );
}

// ---- refusals told in the size round ---------------------------------------------------------

const CODES: PayloadRefusal[] = ["size", "depth", "cycle", "type", "malformed", "unencodable"];

/** An object ready for a byte round: its bytes, or the size-round code of this rank's refusal of it. */
export interface Outgoing {
  /** The encoding (empty when refused). */
  bytes: Uint8Array;
  /** 0, or the positive code of the refusal (sent as its negative in place of a size). */
  refusal: number;
  /** The error this rank throws once every rank knows (set when `refusal` is). */
  error?: ChoirError;
}

/** Encodes `value` for a byte round; a refusal is kept to be told, not thrown at once. */
export function outgoing(value: unknown, rank: number, op: string, limits: ObjectLimits): Outgoing {
  try {
    return { bytes: packObject(value, rank, op, limits), refusal: 0 };
  } catch (e) {
    const reason = e instanceof PayloadRefusedError ? e.reason : "unencodable";
    return { bytes: new Uint8Array(0), refusal: CODES.indexOf(reason) + 1, error: e as ChoirError };
  }
}

/** A byte round that ended because rank `rank` refused its object (`code` from the size round). */
export class Refused {
  /** @param rank the refusing rank; @param code its refusal code. */
  constructor(readonly rank: number, readonly code: number) {}
}

/** What this rank throws for a refusal told by rank `by` (its own error when it is this rank's). */
export function refusalError(r: Refused, rank: number, op: string, own?: Outgoing): ChoirError {
  if (r.rank === rank && own?.error) return own.error;
  const reason = CODES[r.code - 1] ?? "malformed";
  const why = reason === "size"
    ? "it was over the size limit"
    : reason === "unencodable"
    ? "it could not be encoded"
    : reason === "depth"
    ? "it nested too deep"
    : reason === "cycle"
    ? "it was cyclic"
    : reason === "type"
    ? "it held a type choir does not carry (a RegExp, an Error)"
    : "it was malformed";
  return new PayloadRefusedError(`rank ${r.rank} refused its object for ${op}: ${why}`, reason, {
    rank,
    op,
    peer: r.rank,
  });
}
