/**
 * @module
 * The UCP tags of choir's UCX messages (64 bits): the top 32 bits hold who sends, the next three the
 * kind (payload, hello, abort), the low 29 a frame's number (wrapping; far more than are ever in flight).
 * Hellos name the sender by its rank, which has the whole 32 bits. Frames and aborts carry instead the
 * id the receiver chose for that sender during the hello: random, unique among its peers and known only
 * to the two ranks, so a stranger's endpoint cannot get a message matched by guessing tags.
 */

const KIND_PAYLOAD = 1n << 31n;
const KIND_HELLO = 1n << 30n;
/** The abort bit: an abort listener matches any tag with it (see {@link ABORT_MASK}). */
const KIND_ABORT = 1n << 29n;
const SEQ_MASK = (1n << 29n) - 1n;

/** The mask under which an abort listener matches every abort, from any sender. */
export const ABORT_MASK: bigint = KIND_ABORT;

/** The tag of frame `seq` to the receiver that gave this sender `id`; `payload` for its second part. */
export function frameTag(id: number, seq: number, payload: boolean): bigint {
  return (BigInt(id >>> 0) << 32n) | (payload ? KIND_PAYLOAD : 0n) | (BigInt(seq) & SEQ_MASK);
}

/** The tag of step `step` (0: hello, 1: proof) of the handshake from rank `sender`. */
export function helloTag(sender: number, step: 0 | 1): bigint {
  return (BigInt(sender >>> 0) << 32n) | KIND_HELLO | BigInt(step);
}

/** The tag of an abort to the receiver that gave this sender `id`. */
export function abortTag(id: number): bigint {
  return (BigInt(id >>> 0) << 32n) | KIND_ABORT;
}

/** The sender id a tag carries. */
export function senderId(tag: bigint): number {
  return Number(tag >> 32n);
}
