/**
 * @module
 * UCX status codes: decoding `ucs_status_ptr_t` results, naming a status with UCX's own strings, and
 * turning a failed status into choir's typed errors. Which call failed is the caller's to say.
 */

import { type ChoirError, type ErrorContext, PeerLostError, TransportError } from "../../errors.ts";
import type { UcxLib } from "./lib.ts";

/** `UCS_OK`. */
export const UCS_OK = 0;
/** `UCS_INPROGRESS`: the request has not completed yet. */
export const UCS_INPROGRESS = 1;
/** `UCS_ERR_BUSY`: `ucp_worker_arm` found events still to process. */
export const UCS_ERR_BUSY = -15;

/** Statuses that mean the peer process or its link is gone. */
const PEER_GONE = new Set([
  -3, // IO_ERROR
  -6, // UNREACHABLE
  -17, // SHMEM_SEGMENT: over sysv/posix, a send to a peer whose process died and took its segment along
  -24, // NOT_CONNECTED
  -25, // CONNECTION_RESET
  -80, // ENDPOINT_TIMEOUT
]);

/** `UCS_ERR_LAST` as an unsigned pointer value: results at or above it are error codes. */
const ERR_PTR_FLOOR = 0xFFFFFFFFFFFFFF9Cn;

/** What a `ucs_status_ptr_t` result means. */
export type StatusPtr =
  | { kind: "done" }
  | { kind: "error"; status: number }
  | { kind: "request"; request: Deno.PointerObject };

/** Decodes a `ucs_status_ptr_t`: NULL is immediate success, small negatives are errors, else a request. */
export function decodeStatusPtr(p: Deno.PointerValue): StatusPtr {
  if (p === null) return { kind: "done" };
  const v = Deno.UnsafePointer.value(p);
  if (v >= ERR_PTR_FLOOR) return { kind: "error", status: Number(BigInt.asIntN(64, v)) };
  return { kind: "request", request: p };
}

/** UCX's own name for `status` (e.g. "Connection reset by remote peer"). */
export function statusString(lib: UcxLib, status: number): string {
  const p = lib.ucs.ucs_status_string(status);
  return p === null ? `status ${status}` : Deno.UnsafePointerView.getCString(p);
}

/** Whether `status` means the peer is gone (reset, unreachable, timed out). */
function isPeerGone(status: number): boolean {
  return PEER_GONE.has(status);
}

/**
 * The typed error for a failed UCX call: PeerLostError when the status says the peer is gone (and a
 * peer is named), TransportError otherwise; the message carries UCX's status string.
 */
export function ucxError(lib: UcxLib, what: string, status: number, ctx: ErrorContext): ChoirError {
  const text = `${what}: ${statusString(lib, status)} (UCX status ${status})`;
  if (ctx.peer !== undefined && isPeerGone(status)) {
    return new PeerLostError(`lost rank ${ctx.peer}: ${text}`, ctx);
  }
  return new TransportError(text, ctx);
}

/** Throws {@link ucxError} unless `status` is `UCS_OK`. */
export function check(lib: UcxLib, what: string, status: number, ctx: ErrorContext): void {
  if (status !== UCS_OK) throw ucxError(lib, what, status, ctx);
}
