/**
 * @module
 * The client's side of a store session (see tcp_protocol.ts): checking the server's proof over this
 * client's fresh nonce before anything derived from the token is sent, then signing each request with
 * the session key and a counter used once, and checking the signature of each answer. Sending the
 * requests is TcpStore's job.
 */

import { AuthError, type ErrorContext } from "../../errors.ts";
import type { HmacSha256 } from "../hmac_sha256.ts";
import { fromHex, nonce, PROOF_BYTES, toHex } from "../proof.ts";
import { constantTimeEqual } from "../token.ts";
import { authHeader, requestMac, responseMac, serverProof, sessionKey } from "./tcp_protocol.ts";

/** A hello to send: this client's nonce, and how to open the session from the server's answer. */
export interface Hello {
  /** The body of `POST /v1/hello`. */
  readonly body: Uint8Array<ArrayBuffer>;
  /**
   * Opens the session from the server's answer; throws AuthError (naming `where`) when the server did
   * not prove it holds `token`.
   */
  open(status: number, answer: Uint8Array, where: string, ctx: ErrorContext): ClientSession;
}

/** Starts a hello for a session of `token`. */
export function startHello(token: string): Hello {
  const nonceC = nonce();
  return {
    body: nonceC,
    open(status, answer, where, ctx) {
      const nonceS = answer.subarray(0, PROOF_BYTES);
      const ok = status === 200 && answer.byteLength === 2 * PROOF_BYTES &&
        constantTimeEqual(answer.subarray(PROOF_BYTES), serverProof(token, nonceC, nonceS));
      if (!ok) {
        throw new AuthError(
          `the store server at ${where} cannot prove it holds the job token: another job's store, or ` +
            `something else listening on that port (nothing secret was sent to it)`,
          ctx,
        );
      }
      return new ClientSession(toHex(nonceS), sessionKey(token, nonceC, nonceS));
    },
  };
}

/** An open session: signs requests, checks answers. */
export class ClientSession {
  readonly #sid: string;
  readonly #key: HmacSha256;
  #counter = 0;

  /** A session `sid` (hex of the server's nonce) under `key`. */
  constructor(sid: string, key: HmacSha256) {
    this.#sid = sid;
    this.#key = key;
  }

  /** Signs a request: its counter and `Authorization` header. */
  sign(
    method: string,
    pathAndQuery: string,
    body: Uint8Array,
  ): { counter: number; header: string } {
    const counter = ++this.#counter;
    const mac = requestMac(this.#key, this.#sid, counter, method, pathAndQuery, body);
    return { counter, header: authHeader(this.#sid, counter, mac) };
  }

  /** Whether `mac` (the answer's header) signs the answer `status`/`body` to request `counter`. */
  verify(counter: number, status: number, body: Uint8Array, mac: string | null): boolean {
    const got = mac === null ? undefined : fromHex(mac);
    if (got === undefined) return false;
    return constantTimeEqual(got, responseMac(this.#key, counter, status, body));
  }
}
