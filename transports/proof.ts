/**
 * @module
 * The primitives of choir's challenge/response proofs: HMAC-SHA-256 (hmac_sha256.ts) over length-prefixed
 * parts, fresh random nonces, hex. Every handshake (store sessions, TCP, UCX) proves the job token this
 * way, so the token itself never leaves the process. Which parts each proof covers is its protocol's.
 */

import { HmacSha256 } from "./hmac_sha256.ts";

/** Bytes of a nonce and of a proof (an HMAC-SHA-256). */
export const PROOF_BYTES = 32;

const enc = new TextEncoder();
/** Ready keys of the job tokens this process uses (a process holds one or two). */
const tokenKeys = new Map<string, HmacSha256>();

/** The ready HMAC key of `secret`: a job token (cached) or raw key bytes. */
export function hmacKey(secret: string | Uint8Array): HmacSha256 {
  if (typeof secret !== "string") return new HmacSha256(secret);
  let key = tokenKeys.get(secret);
  if (key === undefined) {
    key = new HmacSha256(enc.encode(secret));
    tokenKeys.set(secret, key);
  }
  return key;
}

/**
 * HMAC-SHA-256 under `key` (a job token or raw key bytes) of `parts`, each prefixed with its 4-byte
 * length so that no two different lists of parts give the same input. Synchronous and cheap: the store
 * signs every request and answer (hmac_sha256.ts says why not Web Crypto).
 */
export function hmacSync(key: string | HmacSha256, ...parts: (string | Uint8Array)[]): Uint8Array {
  let off = 0;
  for (const p of parts) {
    // A string takes at most 3 bytes per UTF-16 unit.
    const room = off + 4 + (typeof p === "string" ? 3 * p.length : p.byteLength);
    if (room > scratch.length) scratch = grow(scratch, room, off);
    const n = typeof p === "string" ? enc.encodeInto(p, scratch.subarray(off + 4)).written : p.byteLength;
    if (typeof p !== "string") scratch.set(p, off + 4);
    scratchView.setUint32(off, n);
    off += 4 + n;
  }
  return (typeof key === "string" ? hmacKey(key) : key).mac(scratch.subarray(0, off));
}

/** The input being assembled, reused by every call (JavaScript runs one at a time). */
let scratch = new Uint8Array(4096);
let scratchView = new DataView(scratch.buffer);

/** A larger scratch holding the first `keep` bytes of `old`. */
function grow(old: Uint8Array, atLeast: number, keep: number): Uint8Array<ArrayBuffer> {
  const next = new Uint8Array(Math.max(atLeast, 2 * old.length));
  next.set(old.subarray(0, keep));
  scratchView = new DataView(next.buffer);
  return next;
}

/** {@link hmacSync} for callers that await (the handshakes). */
export function hmac(key: string | HmacSha256, ...parts: (string | Uint8Array)[]): Promise<Uint8Array> {
  return Promise.resolve(hmacSync(key, ...parts));
}

/** A fresh random nonce of {@link PROOF_BYTES} bytes. */
export function nonce(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(PROOF_BYTES));
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += HEX[b];
  return s;
}

/** Two hex digits of every byte value. */
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** The bytes of lower-case or upper-case hex `text`; undefined when it is not hex of even length. */
export function fromHex(text: string): Uint8Array | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = (digit(text.charCodeAt(2 * i)) << 4) | digit(text.charCodeAt(2 * i + 1));
  }
  return out;
}

/** The value of hex digit `c` (a char code already checked to be one). */
function digit(c: number): number {
  return c <= 57 ? c - 48 : (c | 32) - 87;
}
