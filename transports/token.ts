/**
 * @module
 * Job tokens: generating one, refusing an empty one, comparing two in constant time (so that a stranger
 * cannot learn a secret byte by byte from response timings), the read-only status credential derived
 * from a token, and hashing an identifier before it appears in a world-visible name. Proving a token
 * without sending it is proof.ts's job.
 */

import { type ErrorContext, InvalidArgumentError } from "../errors.ts";
import { hmac, toHex } from "./proof.ts";

/** A fresh random job token: 32 bytes as 64 hex characters. */
export function generateToken(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

/** Compares two byte strings in time that depends only on their lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.byteLength ^ b.byteLength;
  const n = Math.max(a.byteLength, b.byteLength);
  for (let i = 0; i < n; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** Throws InvalidArgumentError unless `token` is a non-empty string: an empty secret proves nothing. */
export function checkToken(token: unknown, ctx: ErrorContext): asserts token is string {
  if (typeof token !== "string" || token.length === 0) {
    throw new InvalidArgumentError(`${ctx.op ?? "this call"} needs a non-empty job token`, ctx);
  }
}

/** The label under which the status credential is derived from the job token. */
const STATUS_LABEL = "CHOIR_STATUS_TOKEN";

/**
 * The read-only credential of the status endpoints (`/status`, `/metrics`) of a job: an HMAC-SHA-256 of
 * a fixed label under the job token, as 64 hex characters. Give it to a Prometheus scraper instead of the
 * job token: it opens those endpoints and nothing else, and the job token cannot be computed from it.
 *
 * @example
 * ```ts
 * import { statusToken } from "@choir/choir/transports";
 * console.log(await statusToken(Deno.env.get("CHOIR_TOKEN")!));
 * ```
 */
export async function statusToken(token: string): Promise<string> {
  checkToken(token, { op: "statusToken" });
  return toHex(await hmac(token, STATUS_LABEL));
}

/**
 * A short tag for an identifier that must not appear verbatim in world-visible names (/dev/shm
 * segments, log paths): `j` and the first 16 hex digits of its SHA-256, then `.`; `n.` without one.
 * A job id may be what a public token was derived from, so only its hash is shown.
 */
export async function hashedId(id: string | undefined): Promise<string> {
  if (!id) return "n.";
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(id)));
  return "j" + toHex(digest.subarray(0, 8)) + ".";
}
