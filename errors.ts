/**
 * @module
 * The typed errors of choir. Every throw in the library uses one of these, and each message names
 * the rank, the operation and what differed, so that a failure in a job of many processes can be
 * traced to its cause from any rank's log.
 */

/** What an error knows about where it happened. All fields are optional. */
export interface ErrorContext {
  /** The rank that raised the error. */
  rank?: number;
  /** The operation (collective, store call, transport call) that failed. */
  op?: string;
  /** The peer rank involved, when there is one. */
  peer?: number;
  /** The underlying error, when this one wraps another. */
  cause?: unknown;
}

function prefix(ctx: ErrorContext): string {
  const parts: string[] = [];
  if (ctx.rank !== undefined) parts.push(`rank ${ctx.rank}`);
  if (ctx.op !== undefined) parts.push(ctx.op);
  if (ctx.peer !== undefined) parts.push(`peer ${ctx.peer}`);
  return parts.length ? `[${parts.join(", ")}] ` : "";
}

/** Base class of every error choir throws. */
export class ChoirError extends Error {
  /** The rank that raised the error, if known. */
  readonly rank?: number;
  /** The operation that failed, if known. */
  readonly op?: string;
  /** The peer rank involved, if any. */
  readonly peer?: number;

  /** Builds an error whose message is prefixed with the rank, op and peer of `ctx`. */
  constructor(message: string, ctx: ErrorContext = {}) {
    super(prefix(ctx) + message, ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.name = new.target.name;
    this.rank = ctx.rank;
    this.op = ctx.op;
    this.peer = ctx.peer;
  }
}

/** An argument was invalid: wrong dtype, length, root, rank, or a buffer that is too small. */
export class InvalidArgumentError extends ChoirError {}

/** Why a {@link PayloadRefusedError} refused an object. */
export type PayloadRefusal = "size" | "depth" | "cycle" | "type" | "malformed" | "unencodable";

/**
 * An object was refused before it was sent or decoded: its encoding is larger than the size cap
 * (`size`), it nests deeper than the limit (`depth`), it refers to itself (`cycle`), it holds a type
 * choir does not carry between ranks, such as a RegExp or an Error (`type`), its bytes are not what
 * choir's encoder writes (`malformed`), or it could not be encoded at all (`unencodable`). Nothing of
 * the size a peer announced was allocated. The rank whose object it was is `peer` (or this rank).
 */
export class PayloadRefusedError extends InvalidArgumentError {
  /** Which rule refused it. */
  readonly reason: PayloadRefusal;
  /** Builds the error for `reason`. */
  constructor(message: string, reason: PayloadRefusal, ctx: ErrorContext = {}) {
    super(message, ctx);
    this.reason = reason;
  }
}

/** An operation did not complete within its timeout. */
export class CollectiveTimeoutError extends ChoirError {
  /** The timeout that expired, in milliseconds. */
  readonly timeoutMs: number;
  /** Builds the error for an operation that ran past `timeoutMs`. */
  constructor(message: string, timeoutMs: number, ctx: ErrorContext = {}) {
    super(`${message} (timed out after ${timeoutMs} ms)`, ctx);
    this.timeoutMs = timeoutMs;
  }
}

/** A peer process went away (closed connection, exited, killed) while an operation needed it. */
export class PeerLostError extends ChoirError {}

/**
 * Two ranks disagreed about the collective they were running: the header of a received message did
 * not match what the receiver expected. `expected` and `received` hold both sides' fingerprints.
 */
export class CollectiveMismatchError extends ChoirError {
  /** The fingerprint this rank expected. */
  readonly expected: Readonly<Record<string, number | string>>;
  /** The fingerprint the peer sent. */
  readonly received: Readonly<Record<string, number | string>>;
  /** Builds the error, listing every field that differs. */
  constructor(
    expected: Record<string, number | string>,
    received: Record<string, number | string>,
    ctx: ErrorContext = {},
  ) {
    const diffs = Object.keys(expected)
      .filter((k) => expected[k] !== received[k])
      .map((k) => `${k}: expected ${expected[k]}, peer sent ${received[k]}`);
    super(`collective mismatch: ${diffs.join("; ")}`, ctx);
    this.expected = expected;
    this.received = received;
  }
}

/** A store operation failed (the server is unreachable, refused the request, or answered badly). */
export class StoreError extends ChoirError {}

/** A store wait or get did not see its keys within the timeout. */
export class StoreTimeoutError extends StoreError {}

/** A request or connection was refused because it did not carry the job's token. */
export class AuthError extends ChoirError {}

/** Rendezvous could not complete: a rank never arrived, or the init method was malformed. */
export class RendezvousError extends ChoirError {}

/** A frame arrived with a payload whose checksum does not match (`CHOIR_CHECKSUM=1`). */
export class DataCorruptionError extends ChoirError {}

/** A connection could not be made or was broken by something other than a peer's death. */
export class TransportError extends ChoirError {}

/** A system library (OpenBLAS, libucp, libcuda, ...) needed for this call is not installed. */
export class LibraryUnavailableError extends ChoirError {}

/** The process group was used after `destroy()` or `abort()`. */
export class GroupDestroyedError extends ChoirError {}

/** `abort()` was called on the group: every operation in flight and every later one fails with this. */
export class AbortedError extends ChoirError {}

/**
 * Deno refused a permission choir needs; `permission` is the flag to add (e.g. `--allow-ffi`,
 * `--allow-net=127.0.0.1:29500`, `--allow-read=/app/rank.ts`).
 */
export class PermissionError extends ChoirError {
  /** The missing permission, as the command-line flag that grants it. */
  readonly permission: string;

  /** Builds the error; the message ends by naming the flag. */
  constructor(message: string, permission: string, ctx: ErrorContext = {}) {
    super(`${message} (run with ${permission})`, ctx);
    this.permission = permission;
  }
}

/**
 * A CUDA driver call returned an error. `call` names the driver function (`cuMemAlloc_v2`), `code` is
 * the CUresult and `codeName`/`description` are what `cuGetErrorName`/`cuGetErrorString` said about it.
 */
export class CudaError extends ChoirError {
  /** The driver function that failed. */
  readonly call: string;
  /** The CUresult it returned. */
  readonly code: number;
  /** The CUresult's name (`CUDA_ERROR_OUT_OF_MEMORY`). */
  readonly codeName: string;
  /** Builds the error for `call` returning `code`; `detail` adds what was asked (sizes, a JIT log). */
  constructor(
    call: string,
    code: number,
    codeName: string,
    description: string,
    detail = "",
    ctx: ErrorContext = {},
  ) {
    super(`${call} failed: ${codeName} (${code}): ${description}${detail ? `; ${detail}` : ""}`, {
      op: ctx.op ?? call,
      ...ctx,
    });
    this.call = call;
    this.code = code;
    this.codeName = codeName;
  }
}

/** A cuBLAS call returned a status other than CUBLAS_STATUS_SUCCESS. */
export class CublasError extends ChoirError {
  /** The cuBLAS function that failed. */
  readonly call: string;
  /** The cublasStatus_t it returned. */
  readonly status: number;
  /** The status's name (`CUBLAS_STATUS_INVALID_VALUE`). */
  readonly statusName: string;
  /** Builds the error for `call` returning `status`. */
  constructor(call: string, status: number, statusName: string, detail = "", ctx: ErrorContext = {}) {
    super(`${call} failed: ${statusName} (${status})${detail ? `; ${detail}` : ""}`, {
      op: ctx.op ?? call,
      ...ctx,
    });
    this.call = call;
    this.status = status;
    this.statusName = statusName;
  }
}
