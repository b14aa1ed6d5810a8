/**
 * @module
 * The HTTP wire contract between TcpStore and the store server: routes, the compare-set body framing
 * and the token check. Both sides import it so they cannot drift apart. Not part of the public API.
 */

import { constantTimeEqual } from "../token.ts";

/**
 * Routes, all under `/v1` and all requiring `Authorization: Bearer <token>`:
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
 * - `GET    /v1/stats`                                                → 200 {@link StoreStats}
 * 503 means the server is shutting down; 400 a malformed request; 401 a missing or wrong token;
 * 409 an operation the data refuses (add on a value that is not a counter).
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

/** What the store server counts (`GET /v1/stats`, `StoreServer.stats()`). */
export interface StoreStats {
  /** Requests answered since the server started, every route. */
  requests: number;
  /** Requests by route name (`kv.get`, `add`, `mget`, `watch`, ...). */
  byRoute: Record<string, number>;
  /** Requests being served now (long-polls included). */
  inFlight: number;
  /** The most requests served at once. */
  peakInFlight: number;
  /** Distinct client connections (remote address and port) seen since the start. */
  connections: number;
  /** Keys held. */
  keys: number;
}

const encoder = new TextEncoder();

/** Whether a request's Authorization header is `Bearer <token>`, compared in constant time. */
export function tokenMatches(header: string | undefined, token: string): boolean {
  return constantTimeEqual(encoder.encode(header ?? ""), encoder.encode(`Bearer ${token}`));
}
