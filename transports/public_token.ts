/**
 * @module
 * Where a public token may still be used. A token derived from a scheduler's job id (config.ts's
 * `tokenOrigin`) is known to anyone who can list the jobs, so it only keeps jobs apart: it is refused for
 * any store that is not on loopback. Deriving it is schedulers.ts's job.
 */

import { type ErrorContext, RendezvousError } from "../errors.ts";

/** Whether `host` names this machine's loopback interface (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return h === "localhost" || h === "::1" || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * Throws RendezvousError, saying how to pass a secret, when a token derived from `origin` (a public
 * identifier) would guard a store at `host:port` that is not on loopback.
 */
export function refusePublicToken(
  origin: string | undefined,
  host: string,
  port: number,
  ctx: ErrorContext,
): void {
  if (origin === undefined || isLoopbackHost(host)) return;
  throw new RendezvousError(
    `no secret job token: CHOIR_TOKEN is not set, and the token choir would derive from ${origin} is ` +
      `public, so it cannot guard the store at ${host}:${port} (not on loopback). Set CHOIR_TOKEN to the ` +
      "same secret on every rank (e.g. `export CHOIR_TOKEN=$(openssl rand -hex 32)` in the batch script " +
      "before srun or mpirun, which pass it on), or start the ranks with `deno task launch`, which makes " +
      "one and hands it to its workers; see docs/security.md",
    ctx,
  );
}
