/**
 * @module
 * How the object collectives turn values into bytes and back: msgpackr with `moreTypes`, so typed
 * arrays, Maps, Sets, Dates and BigInts arrive as what was sent. Moving the bytes is left to the group.
 */

import { Packr } from "msgpackr/pack";
import { InvalidArgumentError } from "../errors.ts";

// One encoder for the process: each message it writes is self-contained (no shared structures).
const packr = new Packr({ moreTypes: true });

/** The bytes of `value`; throws InvalidArgumentError naming `op` when it cannot be encoded. */
export function packObject(value: unknown, rank: number, op: string): Uint8Array {
  try {
    return packr.pack(value);
  } catch (e) {
    throw new InvalidArgumentError(`cannot serialize the object: ${(e as Error).message}`, {
      rank,
      op,
      cause: e,
    });
  }
}

/** The value encoded in `bytes` (sent by rank `from`); throws InvalidArgumentError when they do not decode. */
export function unpackObject<T>(bytes: Uint8Array, rank: number, op: string, from: number): T {
  try {
    return packr.unpack(bytes) as T;
  } catch (e) {
    throw new InvalidArgumentError(`cannot decode the object from rank ${from}: ${(e as Error).message}`, {
      rank,
      op,
      peer: from,
      cause: e,
    });
  }
}
