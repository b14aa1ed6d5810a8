/**
 * @module
 * Small helpers the store implementations share: value coercion and comparison, counter encoding,
 * key checks, abortable sleeps and the wording of timeout errors. Not part of the public API.
 */

import { InvalidArgumentError, StoreError, StoreTimeoutError } from "../../errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The default timeout of store operations (waits, gets, requests): 5 minutes, like torch's. */
export const DEFAULT_STORE_TIMEOUT_MS = 300_000;

/** The longest delay `setTimeout` honours; longer timeouts are treated as "no timeout". */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Returns a private copy of `value` as bytes (strings are UTF-8 encoded). */
export function toBytes(value: Uint8Array | string): Uint8Array<ArrayBuffer> {
  return typeof value === "string" ? encoder.encode(value) : value.slice();
}

/** Whether two byte arrays hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Encodes a counter as its decimal ASCII text, as torch's stores do. */
export function encodeCounter(n: number): Uint8Array<ArrayBuffer> {
  return encoder.encode(String(n));
}

/** Parses a counter written by `add` (absent = 0); a non-integer value is a StoreError. */
export function decodeCounter(
  value: Uint8Array | undefined,
  key: string,
  ctx: { rank?: number; op: string },
): number {
  if (value === undefined) return 0;
  const text = decoder.decode(value);
  const n = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(n)) {
    throw new StoreError(
      `key "${key}" holds ${JSON.stringify(text.slice(0, 40))}, not an integer counter`,
      ctx,
    );
  }
  return n;
}

/** Throws InvalidArgumentError for an empty key or a non-integer add amount. */
export function checkKey(key: string, ctx: { rank?: number; op: string }): void {
  if (typeof key !== "string" || key.length === 0) {
    throw new InvalidArgumentError("store keys must be non-empty strings", ctx);
  }
}

/** Throws InvalidArgumentError unless `amount` is a safe integer. */
export function checkAmount(amount: number, ctx: { rank?: number; op: string }): void {
  if (!Number.isSafeInteger(amount)) {
    throw new InvalidArgumentError(`add amount must be a safe integer, got ${amount}`, ctx);
  }
}

/** Throws InvalidArgumentError unless `ms` is a non-negative number (Infinity allowed). */
export function checkTimeout(ms: number, ctx: { rank?: number; op: string }): void {
  if (typeof ms !== "number" || Number.isNaN(ms) || ms < 0) {
    throw new InvalidArgumentError(`timeout must be a non-negative number of ms, got ${ms}`, ctx);
  }
}

/** Whether `ms` is too long for a timer, so that the wait should be unbounded. */
export function isUnbounded(ms: number): boolean {
  return ms > MAX_TIMER_MS;
}

/** Quotes and joins keys for error messages, eliding a long list. */
function listKeys(keys: readonly string[]): string {
  const shown = keys.slice(0, 8).map((k) => JSON.stringify(k)).join(", ");
  return keys.length > 8 ? `${shown} and ${keys.length - 8} more` : shown;
}

/** The timeout error of a wait or get that still misses `missing` after `timeoutMs`. */
export function waitTimeout(
  missing: readonly string[],
  timeoutMs: number | undefined,
  ctx: { rank?: number; op: string },
): StoreTimeoutError {
  const after = timeoutMs === undefined ? "" : ` after ${timeoutMs} ms`;
  return new StoreTimeoutError(
    `timed out${after} waiting for key${missing.length === 1 ? "" : "s"} ${listKeys(missing)}`,
    ctx,
  );
}

/**
 * Resolves after `ms`, or rejects with a StoreError("store closed") as soon as `signal` aborts.
 * The timer is always cleared, so no timer outlives a closed store; `unref`: it does not keep the
 * process alive.
 */
export function sleep(
  ms: number,
  signal: AbortSignal,
  ctx: { rank?: number; op: string },
  unref = false,
): Promise<void> {
  if (signal.aborted) return Promise.reject(closedError(ctx));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(closedError(ctx));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (unref) Deno.unrefTimer(timer);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** The error of an operation on (or interrupted by) a closed store. */
export function closedError(ctx: { rank?: number; op: string }): StoreError {
  return new StoreError("the store is closed", ctx);
}
