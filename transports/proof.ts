/**
 * @module
 * The primitives of choir's challenge/response proofs: HMAC-SHA-256 (Web Crypto) over length-prefixed
 * parts, fresh random nonces, hex. Every handshake (store sessions, TCP, UCX) proves the job token this
 * way, so the token itself never leaves the process. Which parts each proof covers is its protocol's.
 */

/** Bytes of a nonce and of a proof (an HMAC-SHA-256). */
export const PROOF_BYTES = 32;

const enc = new TextEncoder();
/** Imported HMAC keys of the job tokens this process uses (a process holds one or two). */
const tokenKeys = new Map<string, Promise<CryptoKey>>();

/** The HMAC-SHA-256 key of `secret` (a job token, cached) or of raw key bytes. */
export function hmacKey(secret: string | Uint8Array): Promise<CryptoKey> {
  if (typeof secret !== "string") return importKey(secret);
  let key = tokenKeys.get(secret);
  if (key === undefined) {
    key = importKey(enc.encode(secret));
    tokenKeys.set(secret, key);
  }
  return key;
}

function importKey(raw: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", raw.slice(), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

/**
 * HMAC-SHA-256 under `key` of `parts`, each prefixed with its 4-byte length so that no two different
 * lists of parts give the same input.
 */
export async function hmac(
  key: string | Uint8Array | CryptoKey,
  ...parts: (string | Uint8Array)[]
): Promise<Uint8Array> {
  const k = key instanceof CryptoKey ? key : await hmacKey(key);
  const bytes = parts.map((p) => typeof p === "string" ? enc.encode(p) : p);
  const input = new Uint8Array(bytes.reduce((n, b) => n + 4 + b.byteLength, 0));
  const view = new DataView(input.buffer);
  let off = 0;
  for (const b of bytes) {
    view.setUint32(off, b.byteLength);
    input.set(b, off + 4);
    off += 4 + b.byteLength;
  }
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, input));
}

/** A fresh random nonce of {@link PROOF_BYTES} bytes. */
export function nonce(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(PROOF_BYTES));
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += (b < 16 ? "0" : "") + b.toString(16);
  return s;
}

/** The bytes of lower-case or upper-case hex `text`; undefined when it is not hex of even length. */
export function fromHex(text: string): Uint8Array | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}
