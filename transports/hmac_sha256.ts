/**
 * @module
 * HMAC-SHA-256 (RFC 2104 over FIPS 180-4's SHA-256), synchronous and allocation-light, with the key's
 * inner and outer states computed once per key. The store signs every request and answer; Web Crypto's
 * `sign` costs 80-100 us a call here (an async op) and node:crypto's `createHmac` 7-35 us (a Buffer and
 * a native hash object per call), where this costs a few us for a short message; from 4 KiB node:crypto
 * is the faster, and signs once loaded (on the first such message). The tests check it against
 * node:crypto on many lengths. Which parts a proof covers is proof.ts's business.
 */

import type { createHmac } from "node:crypto";

/** SHA-256's round constants (the first 32 bits of the fractional parts of the first 64 primes' cube roots). */
const K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

/** SHA-256's initial state. */
const IV = new Int32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

const BLOCK = 64;
/** The message schedule, shared by every call (JavaScript runs one call at a time). */
const W = new Int32Array(64);
/** A block being assembled (padding, the outer hash's input). */
const TAIL = new Uint8Array(2 * BLOCK);
/** The inner hash of an HMAC, shared likewise. */
const INNER = new Uint8Array(32);

/** Folds the 64-byte block of `data` at `off` into `state`. */
function compress(state: Int32Array, data: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++, off += 4) {
    W[i] = (data[off] << 24) | (data[off + 1] << 16) | (data[off + 2] << 8) | data[off + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15], b = W[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = state[0], b = state[1], c = state[2], d = state[3];
  let e = state[4], f = state[5], g = state[6], h = state[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

/**
 * Hashes `data` on from `state` (which has already absorbed `before` bytes, a whole number of blocks)
 * to the end, padding included; leaves the digest's words in `state`.
 */
function finish(state: Int32Array, before: number, data: Uint8Array): void {
  const whole = data.length - (data.length % BLOCK);
  for (let off = 0; off < whole; off += BLOCK) compress(state, data, off);
  const rest = data.length - whole;
  TAIL.fill(0);
  TAIL.set(data.subarray(whole), 0);
  TAIL[rest] = 0x80;
  const tailLen = rest + 9 <= BLOCK ? BLOCK : 2 * BLOCK;
  // The message length in bits, big-endian, in the last 8 bytes (lengths here stay below 2^53 bits).
  const bits = (before + data.length) * 8;
  const hi = Math.floor(bits / 0x1_0000_0000), lo = bits >>> 0;
  for (let i = 0; i < 4; i++) {
    TAIL[tailLen - 8 + i] = hi >>> (24 - 8 * i);
    TAIL[tailLen - 4 + i] = lo >>> (24 - 8 * i);
  }
  for (let off = 0; off < tailLen; off += BLOCK) compress(state, TAIL, off);
}

/** The big-endian bytes of the 8 words of `state`, into `out` (a fresh array by default). */
function digestBytes(state: Int32Array, out = new Uint8Array(32)): Uint8Array<ArrayBuffer> {
  for (let i = 0; i < 8; i++) {
    const w = state[i];
    out[4 * i] = w >>> 24;
    out[4 * i + 1] = w >>> 16;
    out[4 * i + 2] = w >>> 8;
    out[4 * i + 3] = w;
  }
  return out;
}

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Uint8Array<ArrayBuffer> {
  const state = IV.slice();
  finish(state, 0, data);
  return digestBytes(state);
}

/**
 * Messages from this many bytes are signed by node:crypto, whose native hash outruns this file's once
 * the message pays for its per-call object (2026-12-08: 4 KiB 22 against 34 us, 16 KiB 34 against 156
 * us, 64 KiB 59 against 534 us): the store's large answers, such as an N-rank job's host table.
 */
const NATIVE_FROM = 4096;

/**
 * node:crypto's `createHmac`, once loaded. It is loaded on the first large message, not with this module:
 * importing it costs every process about 15 ms of start-up, and a small job never signs a large message.
 */
let nativeHmac: typeof createHmac | undefined;
let loading = false;

function native(): typeof createHmac | undefined {
  if (nativeHmac === undefined && !loading) {
    loading = true;
    import("node:crypto").then((m) => nativeHmac = m.createHmac, () => {/* this file's hash serves */});
  }
  return nativeHmac;
}

/** An HMAC-SHA-256 key, ready to sign: its inner and outer states are computed once. */
export class HmacSha256 {
  readonly #inner = new Int32Array(8);
  readonly #outer = new Int32Array(8);
  readonly #state = new Int32Array(8);
  /** The key's bytes, for the native path. */
  readonly #key: Uint8Array;

  /** A key of any length (a longer one than a block is hashed first, as RFC 2104 says). */
  constructor(key: Uint8Array) {
    this.#key = key.slice();
    const k = new Uint8Array(BLOCK);
    k.set(key.length > BLOCK ? sha256(key) : key);
    const pad = new Uint8Array(BLOCK);
    for (const [state, byte] of [[this.#inner, 0x36], [this.#outer, 0x5c]] as const) {
      for (let i = 0; i < BLOCK; i++) pad[i] = k[i] ^ byte;
      state.set(IV);
      compress(state, pad, 0);
    }
  }

  /** The 32-byte HMAC of `data`. */
  mac(data: Uint8Array): Uint8Array<ArrayBuffer> {
    const fast = data.byteLength >= NATIVE_FROM ? native() : undefined;
    if (fast !== undefined) return new Uint8Array(fast("sha256", this.#key).update(data).digest());
    const s = this.#state;
    s.set(this.#inner);
    finish(s, BLOCK, data);
    digestBytes(s, INNER);
    s.set(this.#outer);
    finish(s, BLOCK, INNER);
    return digestBytes(s);
  }
}
