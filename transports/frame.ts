/**
 * @module
 * The fixed message header every collective frame carries (a DataView, not msgpack), and the check
 * a receiver runs against what it expected. Transports write and read it; collectives fill it in.
 */

import { CollectiveMismatchError, type ErrorContext } from "../errors.ts";

/** Size in bytes of an encoded {@link FrameHeader}. */
export const HEADER_BYTES = 40;

const MAGIC = 0x43485231; // "CHR1"
/** The magic of an abort frame: a failing rank's last frame, carrying its cause (`abort_cause.ts`). */
const ABORT_MAGIC = 0x43485258; // "CHRX"

/**
 * The fingerprint of one message of a collective. Sender and receiver compute it independently;
 * any field that differs means the two ranks are not running the same collective.
 */
export interface FrameHeader {
  /** Process group id (0 for the world group). */
  group: number;
  /** Sequence number of the collective in its group (or of the p2p message per peer pair). */
  seq: number;
  /** Operation code: collective kind in the low byte, reduce op in the high byte. */
  op: number;
  /** dtype wire code. */
  dtype: number;
  /** Element count of the whole collective (not of this frame). */
  count: number;
  /** Root rank, or a tag for send/recv; -1 when unused. */
  root: number;
  /** Index of this frame within the collective (step and chunk). */
  chunk: number;
  /** Payload length in bytes of this frame. */
  bytes: number;
}

/** Writes `h` into `buf[0..HEADER_BYTES)`. */
export function encodeHeader(h: FrameHeader, view: DataView, offset = 0): void {
  view.setUint32(offset, MAGIC, true);
  view.setUint32(offset + 4, h.group >>> 0, true);
  view.setUint32(offset + 8, h.seq >>> 0, true);
  view.setUint16(offset + 12, h.op, true);
  view.setUint16(offset + 14, h.dtype, true);
  view.setFloat64(offset + 16, h.count, true);
  view.setInt32(offset + 24, h.root, true);
  view.setUint32(offset + 28, h.chunk >>> 0, true);
  view.setFloat64(offset + 32, h.bytes, true);
}

/** Reads a header; returns null when the magic number is wrong (not a choir frame). */
export function decodeHeader(view: DataView, offset = 0): FrameHeader | null {
  if (view.getUint32(offset, true) !== MAGIC) return null;
  return {
    group: view.getUint32(offset + 4, true),
    seq: view.getUint32(offset + 8, true),
    op: view.getUint16(offset + 12, true),
    dtype: view.getUint16(offset + 14, true),
    count: view.getFloat64(offset + 16, true),
    root: view.getInt32(offset + 24, true),
    chunk: view.getUint32(offset + 28, true),
    bytes: view.getFloat64(offset + 32, true),
  };
}

/** An abort frame: a header with the abort magic and the cause's length, then the cause. */
export function encodeAbortFrame(cause: Uint8Array): Uint8Array {
  const frame = new Uint8Array(HEADER_BYTES + cause.byteLength);
  const view = new DataView(frame.buffer);
  view.setUint32(0, ABORT_MAGIC, true);
  view.setFloat64(32, cause.byteLength, true);
  frame.set(cause, HEADER_BYTES);
  return frame;
}

/** The cause length of the abort frame whose header is at `offset`, or null for any other header. */
export function abortCauseBytes(view: DataView, offset = 0): number | null {
  if (view.getUint32(offset, true) !== ABORT_MAGIC) return null;
  const n = view.getFloat64(offset + 32, true);
  return Number.isInteger(n) && n >= 0 && n <= 65536 ? n : null;
}

/** Whether two headers describe the same message. */
function sameHeader(a: FrameHeader, b: FrameHeader): boolean {
  return a.group === b.group && (a.seq >>> 0) === (b.seq >>> 0) && a.op === b.op &&
    a.dtype === b.dtype && a.count === b.count && a.root === b.root &&
    (a.chunk >>> 0) === (b.chunk >>> 0) && a.bytes === b.bytes;
}

/** Names an op code for error messages; set by the collectives layer, which owns the op names. */
let describeOp: (op: number) => string = (op) => String(op);
/** Names a dtype code for error messages; set by the collectives layer. */
let describeDtype: (dtype: number) => string = (d) => String(d);

/** Installs the functions that turn op and dtype codes into names in mismatch messages. */
export function setHeaderNames(op: (op: number) => string, dtype: (d: number) => string): void {
  describeOp = op;
  describeDtype = dtype;
}

function fingerprint(h: FrameHeader): Record<string, number | string> {
  return {
    group: h.group,
    seq: h.seq >>> 0,
    op: describeOp(h.op),
    dtype: describeDtype(h.dtype),
    count: h.count,
    root: h.root,
    chunk: h.chunk >>> 0,
    bytes: h.bytes,
  };
}

/** Throws {@link CollectiveMismatchError} listing the fields where `got` differs from `expected`. */
export function checkHeader(expected: FrameHeader, got: FrameHeader, ctx: ErrorContext): void {
  if (!sameHeader(expected, got)) {
    throw new CollectiveMismatchError(fingerprint(expected), fingerprint(got), ctx);
  }
}
