/**
 * @module
 * The store server's side of sessions (see tcp_protocol.ts): answering hellos with its proof, admitting
 * signed requests (each counter once), and signing answers. Pending hellos and sessions are bounded, so
 * strangers that only say hello cannot fill memory. The routes are tcp_app.ts's.
 */

import type { HmacSha256 } from "../hmac_sha256.ts";
import { fromHex, nonce, PROOF_BYTES, toHex } from "../proof.ts";
import { constantTimeEqual } from "../token.ts";
import { requestMac, responseMac, serverProof, sessionKey, type SignedAuth } from "./tcp_protocol.ts";

/** Hellos waiting for their first signed request, at most. */
const MAX_PENDING = 4096;
/** How long a hello waits for its first signed request, ms. */
const PENDING_MS = 60_000;
/** Sessions kept, at most (the least recently used goes; its client says hello again). */
const MAX_SESSIONS = 65_536;
/** A counter this far below the highest seen is refused as too old to tell from a replay. */
const WINDOW = 1 << 16;

interface Pending {
  nonceC: Uint8Array;
  nonceS: Uint8Array;
  expires: number;
}

/** One client's session: its key and the counters already used. */
export interface Session {
  /** The session key. */
  readonly key: HmacSha256;
  /** Whether a request of this session has verified. */
  proven: boolean;
  /** The highest counter admitted. */
  max: number;
  /** Counters admitted above `max - WINDOW`. */
  readonly seen: Set<number>;
}

/** Sessions of one store server. */
export class SessionTable {
  readonly #token: string;
  readonly #pending = new Map<string, Pending>();
  readonly #live = new Map<string, Session>();

  /** Sessions proven by `token`. */
  constructor(token: string) {
    this.#token = token;
  }

  /** Answers a hello carrying `nonceC`: this server's nonce and proof, or undefined for a malformed one. */
  hello(nonceC: Uint8Array): Uint8Array<ArrayBuffer> | undefined {
    if (nonceC.byteLength !== PROOF_BYTES) return undefined;
    const nonceS = nonce();
    const proof = serverProof(this.#token, nonceC, nonceS);
    const now = Date.now();
    for (const [sid, p] of this.#pending) {
      if (this.#pending.size < MAX_PENDING && p.expires > now) break;
      this.#pending.delete(sid);
    }
    this.#pending.set(toHex(nonceS), { nonceC: nonceC.slice(), nonceS, expires: now + PENDING_MS });
    const out = new Uint8Array(2 * PROOF_BYTES);
    out.set(nonceS);
    out.set(proof, PROOF_BYTES);
    return out;
  }

  /** The session of a request signed as `auth` over the rest, or undefined to refuse it (401). */
  admit(
    auth: SignedAuth,
    method: string,
    pathAndQuery: string,
    body: Uint8Array,
  ): Session | undefined {
    let s = this.#live.get(auth.sid);
    if (s === undefined) {
      const p = this.#pending.get(auth.sid);
      if (p === undefined || p.expires < Date.now()) return undefined;
      this.#pending.delete(auth.sid);
      s = { key: sessionKey(this.#token, p.nonceC, p.nonceS), proven: false, max: 0, seen: new Set() };
      this.#live.set(auth.sid, s);
      if (this.#live.size > MAX_SESSIONS) this.#live.delete(this.#live.keys().next().value!);
    }
    const mac = fromHex(auth.mac);
    const expected = requestMac(s.key, auth.sid, auth.counter, method, pathAndQuery, body);
    if (mac === undefined || !constantTimeEqual(mac, expected)) {
      // A session never proven is dropped: its hello is used up.
      if (!s.proven) this.#live.delete(auth.sid);
      return undefined;
    }
    s.proven = true;
    if (!fresh(s, auth.counter)) return undefined;
    // Least recently used last.
    this.#live.delete(auth.sid);
    this.#live.set(auth.sid, s);
    return s;
  }

  /** The hex signature of an answer to request `counter` of session `s`. */
  sign(s: Session, counter: number, status: number, body: Uint8Array): string {
    return toHex(responseMac(s.key, counter, status, body));
  }
}

/** Admits counter `n` of `s` once. */
function fresh(s: Session, n: number): boolean {
  if (n <= s.max - WINDOW || s.seen.has(n)) return false;
  s.seen.add(n);
  if (n > s.max) s.max = n;
  if (s.seen.size > 2 * WINDOW) { for (const x of s.seen) if (x <= s.max - WINDOW) s.seen.delete(x); }
  return true;
}
