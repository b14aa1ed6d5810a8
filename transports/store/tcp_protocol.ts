/**
 * @module
 * The HTTP wire contract between TcpStore and the store server: routes, the compare-set body framing,
 * and the session proof and request signatures. Both sides import it so they cannot drift apart. Not
 * part of the public API.
 */

import type { HmacSha256 } from "../hmac_sha256.ts";
import { hmacKey, hmacSync, toHex } from "../proof.ts";

/**
 * Routes, all under `/v1`:
 * - `POST   /v1/hello`              body = nonce_c (32 B)                → 200 nonce_s (32 B) + server proof (32 B)
 * - `PUT    /v1/kv/:key`            body = value                      → 204
 * - `GET    /v1/kv/:key?timeout=ms` long-polls until set              → 200 value | 408 {missing}
 * - `DELETE /v1/kv/:key`                                              → 200 boolean (existed)
 * - `POST   /v1/add/:key?amount=n`                                    → 200 new value (decimal)
 * - `POST   /v1/cas/:key`           body = framed(expected, desired)  → 200 value afterwards
 * - `POST   /v1/wait?timeout=ms`    body = {"keys": [...]}            → 204 | 408 {missing}
 * - `POST   /v1/check`              body = {"keys": [...]}            → 200 boolean
 * - `GET    /v1/num-keys`                                             → 200 number
 * - `POST   /v1/mget?timeout=ms`    body = {"keys": [...]}            → 200 framed values | 408 {missing}
 * - `POST   /v1/watch?timeout=ms`   body = {"keys": [...]}            → 200 {"set": [...]} ([] at timeout)
 * - `POST   /v1/arrive?timeout=ms`  body = JSON Arrival (store.ts)    → 200 {"held": claim, "set": [...] | null}
 * - `POST   /v1/gather?timeout=ms`  body = JSON Gathering (store.ts)  → 200 the table (all_gather.ts) | 408 {missing}
 * - `GET    /v1/stats`                                                → 200 {@link StoreStats}
 *
 * A long-poll (`kv` get, `wait`, `mget`, `watch`, `arrive`, `gather`) waits at most the server's `maxWaitMs`: a longer
 * `timeout=` is clamped to it, and the client asks again until its own deadline.
 *
 * Sessions: the server proves the token over the client's fresh nonce (`hello`); the client checks that
 * before it sends anything derived from the token. Both then hold the session key
 * `HMAC(token, "choir/store/session", nonce_c, nonce_s)`, and every other request carries
 * `Authorization: Choir <hex nonce_s>.<counter>.<hex HMAC(key, request)>` over the counter, method, path
 * with query and body; the counter is used once per session, so a recorded request cannot be replayed.
 * Each answer carries `x-choir-mac: <hex HMAC(key, counter, status, body)>`.
 * 503 means the server is shutting down (its answers then carry `Connection: close`); 400 a malformed
 * request; 401 anything unauthenticated, unknown paths included (one answer for all); 409 an operation
 * the data refuses (add on a value that is not a counter).
 */
export const API = "/v1";

/** The path of a single-key route, the key url-encoded into one path segment. */
export function keyPath(route: "kv" | "add" | "cas", key: string): string {
  return `${API}/${route}/${encodeURIComponent(key)}`;
}

/** Frames a compare-set body: 4-byte big-endian length of `expected`, `expected`, then `desired`. */
export function frameCompareSet(expected: Uint8Array, desired: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(4 + expected.length + desired.length);
  new DataView(out.buffer).setUint32(0, expected.length);
  out.set(expected, 4);
  out.set(desired, 4 + expected.length);
  return out;
}

/** Splits a body made by {@link frameCompareSet}; undefined if it is malformed. */
export function unframeCompareSet(
  body: Uint8Array,
): { expected: Uint8Array; desired: Uint8Array } | undefined {
  if (body.length < 4) return undefined;
  const n = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(0);
  if (4 + n > body.length) return undefined;
  return { expected: body.subarray(4, 4 + n), desired: body.subarray(4 + n) };
}

/** The path of the session hello (the one route open without a session). */
export const HELLO_PATH = `${API}/hello`;
/** The scheme of the `Authorization` header of signed requests. */
export const AUTH_SCHEME = "Choir";
/** The header carrying the signature of an answer. */
export const MAC_HEADER = "x-choir-mac";

/** Frames values for `mget`: per value a 4-byte big-endian length, then its bytes. */
export function frameValues(values: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(values.reduce((n, v) => n + 4 + v.length, 0));
  const view = new DataView(out.buffer);
  let off = 0;
  for (const v of values) {
    view.setUint32(off, v.length);
    out.set(v, off + 4);
    off += 4 + v.length;
  }
  return out;
}

/** Splits a body made by {@link frameValues} into `count` values; undefined if it is malformed. */
export function unframeValues(body: Uint8Array, count: number): Uint8Array[] | undefined {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out: Uint8Array[] = [];
  let off = 0;
  while (out.length < count) {
    if (off + 4 > body.length) return undefined;
    const n = view.getUint32(off);
    if (off + 4 + n > body.length) return undefined;
    out.push(body.slice(off + 4, off + 4 + n));
    off += 4 + n;
  }
  return off === body.length ? out : undefined;
}

/** What the store server counts and holds (`GET /v1/stats`, `StoreServer.stats()`). */
export interface StoreStats {
  /** Requests answered since the server started, every route (refused ones included). */
  requests: number;
  /** Requests by route name (`kv.get`, `add`, `mget`, `watch`, `hello`, ...). */
  byRoute: Record<string, number>;
  /** Requests being served now (long-polls included). */
  inFlight: number;
  /** The most requests served at once. */
  peakInFlight: number;
  /** Connections open now. */
  connections: number;
  /** Connections accepted since the start. */
  connectionsSeen: number;
  /** Long-polls (`get`, `wait`, `mget`, `watch`) waiting for keys now. */
  waiters: number;
  /** Keys held. */
  keys: number;
  /**
   * Connections of the serving thread whose answers go out through libc `send` (found), those written
   * through Deno only (missed: the socket was not found nearby), and descriptors looked at to tell
   * (`transports/http/fd_send.ts`). Absent from servers before it.
   */
  fdSend?: { found: number; missed: number; probes: number; scans: number };
}

const SERVER_LABEL = "choir/store/server";
const KEY_LABEL = "choir/store/session";
const REQUEST_LABEL = "choir/store/request";
const RESPONSE_LABEL = "choir/store/response";

/** The server's proof that it holds `token`, over both nonces of a hello. */
export function serverProof(token: string, nonceC: Uint8Array, nonceS: Uint8Array): Uint8Array {
  return hmacSync(token, SERVER_LABEL, nonceC, nonceS);
}

/** The session key both sides derive after a hello. */
export function sessionKey(token: string, nonceC: Uint8Array, nonceS: Uint8Array): HmacSha256 {
  return hmacKey(hmacSync(token, KEY_LABEL, nonceC, nonceS));
}

/** The signature of request number `counter` of session `sid`. */
export function requestMac(
  key: HmacSha256,
  sid: string,
  counter: number,
  method: string,
  pathAndQuery: string,
  body: Uint8Array,
): Uint8Array {
  return hmacSync(key, REQUEST_LABEL, sid, String(counter), method, pathAndQuery, body);
}

/** The signature of the answer to request number `counter`. */
export function responseMac(
  key: HmacSha256,
  counter: number,
  status: number,
  body: Uint8Array,
): Uint8Array {
  return hmacSync(key, RESPONSE_LABEL, String(counter), String(status), body);
}

/** The `Authorization` header of a signed request. */
export function authHeader(sid: string, counter: number, mac: Uint8Array): string {
  return `${AUTH_SCHEME} ${sid}.${counter}.${toHex(mac)}`;
}

/** The parts of a signed request's `Authorization` header; undefined when malformed. */
export interface SignedAuth {
  /** The session id (hex of the server's nonce). */
  sid: string;
  /** The request's number within the session. */
  counter: number;
  /** The request's signature (hex). */
  mac: string;
}

/** Parses an `Authorization` header made by {@link authHeader}. */
export function parseAuth(header: string | undefined): SignedAuth | undefined {
  const m = header?.match(/^Choir ([0-9a-f]{64})\.([1-9][0-9]{0,15})\.([0-9a-f]{64})$/);
  if (!m) return undefined;
  const counter = Number(m[2]);
  return Number.isSafeInteger(counter) ? { sid: m[1], counter, mac: m[3] } : undefined;
}
