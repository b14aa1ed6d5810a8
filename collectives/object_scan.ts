/**
 * @module
 * Reads a peer's object bytes before msgpackr decodes them, and refuses what choir's encoder never
 * writes or what would cost more than the bytes: nesting deeper than the limit, a container claiming
 * more elements than bytes remain (msgpackr allocates what a header claims: 5 KB of nested array
 * headers made it allocate 700 MB), cyclic or shared references, RegExp and Error objects, and any
 * extension but the ones `moreTypes` uses for plain data. One pass, no recursion, no allocation but
 * the record table; the decoder reads the same tokens afterwards. Decoding is objects.ts's job.
 */

import type { PayloadRefusal } from "../errors.ts";

/** Why bytes were refused, or null when they may be decoded. */
export type ScanVerdict = { reason: PayloadRefusal; detail: string } | null;

/** msgpackr's extension types that carry plain data: undefined, BigInt, typed arrays and buffers, Date. */
const DATA_EXTENSIONS = new Set([0x00, 0x42, 0x74, 0xff]);
const EXT_SET = 0x73;
const EXT_RECORD = 0x72;
const REFUSED_EXTENSIONS: Record<number, [PayloadRefusal, string]> = {
  0x65: ["type", "an Error object"],
  0x78: ["type", "a RegExp"],
  0x69: ["cycle", "a cyclic or shared reference"],
  0x70: ["cycle", "a cyclic or shared reference"],
};

/**
 * Checks `b` as one msgpackr value (moreTypes, records, no structured clone) nested at most
 * `maxDepth` containers deep (arrays, objects, Maps and Sets count one level each).
 */
export function scanPacked(b: Uint8Array, maxDepth: number): ScanVerdict {
  const len = b.length;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  // Fields of each record (msgpackr's object shapes) defined so far in this message; -1: none.
  const records = new Int32Array(64).fill(-1);
  const open: number[] = []; // values still to read in each enclosing container
  let left = 1; // values still to read at this level
  let pos = 0;
  let setOpened = false; // a Set's header was read: its array comes next
  const malformed = (detail: string): ScanVerdict => ({
    reason: "malformed",
    detail: `malformed: ${detail}`,
  });
  const u8 = () => b[pos++];
  const u16 = () => (pos += 2, view.getUint16(pos - 2));
  const u32 = () => (pos += 4, view.getUint32(pos - 4));
  // A length is read (moving pos) before it is added: never `pos += u8()`, which adds to the old pos.
  const skip = (n: number) => {
    pos += n;
  };

  for (;;) {
    while (left === 0) {
      if (open.length === 0) return pos === len ? null : malformed(`${len - pos} bytes after the value`);
      left = open.pop()!;
    }
    if (pos >= len) return malformed("it ends inside a value");
    const t = u8();
    let children = 0;
    let isArray = false;
    let isSetHeader = false;
    if (t < 0x40 || t >= 0xe0) {
      // a fixint
    } else if (t < 0x80) {
      // A record's values follow its id; an id not defined in this message is a plain integer.
      children = Math.max(0, records[t & 0x3f]);
    } else if (t < 0x90) {
      children = 2 * (t - 0x80);
    } else if (t < 0xa0) {
      children = t - 0x90;
      isArray = true;
    } else if (t < 0xc0) {
      pos += t - 0xa0;
    } else {
      switch (t) {
        case 0xc0:
        case 0xc2:
        case 0xc3:
          break;
        case 0xc4:
        case 0xd9:
          skip(pos < len ? u8() : 1);
          break;
        case 0xc5:
        case 0xda:
          skip(pos + 2 <= len ? u16() : 2);
          break;
        case 0xc6:
        case 0xdb:
          skip(pos + 4 <= len ? u32() : 4);
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          pos += 4;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          pos += 8;
          break;
        case 0xcc:
        case 0xd0:
          pos += 1;
          break;
        case 0xcd:
        case 0xd1:
          pos += 2;
          break;
        case 0xdc:
          if (pos + 2 > len) return malformed("it ends inside a value");
          children = u16();
          isArray = true;
          break;
        case 0xdd:
          if (pos + 4 > len) return malformed("it ends inside a value");
          children = u32();
          isArray = true;
          break;
        case 0xde:
          if (pos + 2 > len) return malformed("it ends inside a value");
          children = 2 * u16();
          break;
        case 0xdf:
          if (pos + 4 > len) return malformed("it ends inside a value");
          children = 2 * u32();
          break;
        case 0xd4: {
          if (pos + 2 > len) return malformed("it ends inside a value");
          const type = u8();
          if (type === EXT_RECORD) {
            const fields = recordKeys(b, view, pos + 1);
            if (fields === null) return malformed("a record definition without a list of string keys");
            records[b[pos] & 0x3f] = fields.count;
            pos = fields.end;
            children = fields.count;
            break;
          }
          const refused = extension(type);
          if (refused) return refused;
          pos += 1;
          isSetHeader = type === EXT_SET;
          break;
        }
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
        case 0xc7:
        case 0xc8:
        case 0xc9: {
          const size = t === 0xc7
            ? (pos < len ? u8() : -1)
            : t === 0xc8
            ? (pos + 2 <= len ? u16() : -1)
            : t === 0xc9
            ? (pos + 4 <= len ? u32() : -1)
            : 1 << (t - 0xd4);
          if (size < 0 || pos >= len) return malformed("it ends inside a value");
          const type = u8();
          // choir's encoder defines records with one-byte ids only (0xd4 0x72).
          if (type === EXT_RECORD) return malformed("a record definition of a kind choir does not write");
          const refused = extension(type);
          if (refused) return refused;
          pos += size;
          isSetHeader = type === EXT_SET;
          break;
        }
        default:
          return malformed(`byte 0x${t.toString(16)} is not part of choir's encoding`);
      }
    }
    if (pos > len) return malformed("it ends inside a value");
    if (setOpened && !isArray) return malformed("a Set whose elements are not an array");
    setOpened = isSetHeader;
    // A Set's header and its array are one value, one level deep.
    if (!isSetHeader) left--;
    if (children > 0) {
      // Every element takes a byte at least: a header claiming more than remain is a lie.
      if (children > len - pos) {
        return malformed(`a container claims ${children} elements in ${len - pos} bytes`);
      }
      if (open.length >= maxDepth) {
        return { reason: "depth", detail: `it nests deeper than ${maxDepth} levels` };
      }
      open.push(left);
      left = children;
    }
  }
}

/** Null for an extension that carries plain data (or a Set), else why it is refused. */
function extension(type: number): ScanVerdict {
  if (DATA_EXTENSIONS.has(type) || type === EXT_SET) return null;
  const known = REFUSED_EXTENSIONS[type];
  if (known) return { reason: known[0], detail: `it holds ${known[1]}` };
  return { reason: "type", detail: `it holds msgpack extension type ${type}, which choir does not carry` };
}

/** The keys array of a record definition at `pos`: all strings; its count and where it ends, or null. */
function recordKeys(b: Uint8Array, view: DataView, pos: number): { count: number; end: number } | null {
  const len = b.length;
  if (pos >= len) return null;
  const t = b[pos++];
  let count: number;
  if (t >= 0x90 && t < 0xa0) count = t - 0x90;
  else if (t === 0xdc && pos + 2 <= len) [count, pos] = [view.getUint16(pos), pos + 2];
  else if (t === 0xdd && pos + 4 <= len) [count, pos] = [view.getUint32(pos), pos + 4];
  else return null;
  if (count > len - pos) return null;
  for (let i = 0; i < count; i++) {
    if (pos >= len) return null;
    const s = b[pos++];
    let n: number;
    if (s >= 0xa0 && s < 0xc0) n = s - 0xa0;
    else if (s === 0xd9 && pos + 1 <= len) [n, pos] = [b[pos], pos + 1];
    else if (s === 0xda && pos + 2 <= len) [n, pos] = [view.getUint16(pos), pos + 2];
    else if (s === 0xdb && pos + 4 <= len) [n, pos] = [view.getUint32(pos), pos + 4];
    else return null;
    pos += n;
    if (pos > len) return null;
  }
  return { count, end: pos };
}
