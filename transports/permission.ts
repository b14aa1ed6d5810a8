/**
 * @module
 * Turns Deno's generic permission refusal (NotCapable) into a PermissionError that names the flag
 * to add. Which permission each call needs is its caller's knowledge; docs/permissions.md lists them.
 */

import { type ErrorContext, PermissionError } from "../errors.ts";

/** Whether `e` is Deno refusing a permission. */
export function isPermissionDenied(e: unknown): boolean {
  return e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied;
}

/** The `--allow-net` flag for `host` (and `port`, unless 0: a listener on any port needs the host only). */
export function netFlag(host: string, port?: number): string {
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return port ? `--allow-net=${h}:${port}` : `--allow-net=${h}`;
}

/** A PermissionError for a refused network call: `what` failed, `flag` grants it. */
export function netPermissionError(
  what: string,
  flag: string,
  cause: unknown,
  ctx: ErrorContext,
): PermissionError {
  return new PermissionError(`${what}: Deno refused network access`, flag, { ...ctx, cause });
}

/**
 * Whether a Worker thread may load the module at `url`: one from a local checkout needs read access to
 * it. Without it (a program run with narrow permissions) the caller does without the thread.
 */
export function threadMayLoad(url: URL): boolean {
  return url.protocol !== "file:" ||
    Deno.permissions.querySync({ name: "read", path: url }).state === "granted";
}
