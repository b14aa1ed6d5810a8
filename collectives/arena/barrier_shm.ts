/**
 * @module
 * Same-host barrier on the shared arena: each rank publishes its call slot and waits until every
 * peer has published the same call. No channel, no syscall unless a rank has to sleep.
 *
 * Cost: one cache-line handoff per peer.
 */

import type { Arena, Fingerprint, WaitContext } from "./shm_arena.ts";

/**
 * Returns once every rank on the arena has entered this barrier (the fingerprint handshake is one):
 * synchronously (undefined) when all are on time, else through the returned promise.
 */
export function barrierShm(a: Arena, fp: Fingerprint, ctx: WaitContext): Promise<void> | undefined {
  const p = a.begin(fp, ctx);
  return typeof p === "number" ? undefined : p.then(() => {});
}
