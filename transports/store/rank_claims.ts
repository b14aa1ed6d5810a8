/**
 * @module
 * Who joined as which rank. Each process claims its rank's arrival key with a compare-and-set holding
 * its host, pid and a per-process id; a second process that finds the key held by another is a
 * duplicate rank. It publishes the conflict under one key of the barrier, so that every process of the
 * job, innocent ranks included, reads the same verdict: at its claim, while it waits at the barrier,
 * or later through {@link watchDuplicateRanks}. What a process does with the verdict is the caller's.
 *
 * Keys, under the barrier's store and tag: `<tag>/<rank>` (the claim, JSON {@link Claimant} and a nonce),
 * `<tag>/duplicate` (the first conflict found, JSON {@link DuplicateRecord}), `<tag>/seen/count` (ranks
 * that have read it) and `<tag>/seen/all` (set by the last of them).
 */

import { RendezvousError } from "../../errors.ts";
import type { Store } from "./store.ts";
import { type KeySubscription, onKeySet } from "./key_watcher.ts";

/** A process that claimed a rank. */
export interface Claimant {
  /** Its host name (as it knows it; empty when it could not tell). */
  host: string;
  /** Its process id, in its own PID namespace. */
  pid: number;
  /** A random id of the process, telling apart processes with equal pids in different namespaces. */
  id: string;
}

/** A rank that two processes claimed. */
export interface DuplicateRecord {
  /** The rank claimed twice. */
  rank: number;
  /** The process that claimed it first. */
  first: Claimant;
  /** The process that found it taken. */
  second: Claimant;
}

/** This process's random id (one per isolate: Worker ranks of one process differ too). */
const PROCESS_ID = crypto.randomUUID();
const dec = new TextDecoder();

/** This process as a claimant, on host `host`. */
export function claimant(host = ""): Claimant {
  return { host, pid: Deno.pid, id: PROCESS_ID };
}

/** The key under which the first conflict of the barrier `tag` is published. */
export function duplicateKey(tag: string): string {
  return `${tag}/duplicate`;
}

/** What {@link claimRank} found. */
export interface ClaimOutcome {
  /** The error to throw when another process holds the rank, else null. */
  twice: RendezvousError | null;
  /** This process held the claim already (an earlier call with the same tag). */
  again: boolean;
}

/**
 * Claims `key` (a rank's arrival key) for `me`. `twice` is null when this process holds it (now, or
 * from an earlier call: `again`), else the conflict is published and `twice` is the error to throw.
 */
export async function claimRank(
  store: Store,
  tag: string,
  key: string,
  rank: number,
  me: Claimant,
  ctx: { rank: number; op: string },
): Promise<ClaimOutcome> {
  const mine = claimValue(me);
  const held = dec.decode(await store.compareSet(key, "", mine));
  return await heldClaim(store, tag, rank, me, mine, held, ctx);
}

/** A fresh claim's value for `me`: a nonce tells this call's claim from the same process's earlier one. */
export function claimValue(me: Claimant): string {
  return JSON.stringify({ ...me, nonce: crypto.randomUUID() });
}

/**
 * What it means that a rank's key holds `held` after this process tried to claim it with `mine`: its own
 * claim, its own earlier one (`again`), or another process's (the conflict is then published).
 */
export async function heldClaim(
  store: Store,
  tag: string,
  rank: number,
  me: Claimant,
  mine: string,
  held: string,
  ctx: { rank: number; op: string },
): Promise<ClaimOutcome> {
  if (held === mine) return { twice: null, again: false };
  const first = parseClaimant(held);
  if (first?.id === me.id) return { twice: null, again: true }; // this process, asking again
  const record: DuplicateRecord = { rank, first: first ?? { host: "", pid: 0, id: "" }, second: me };
  // The first conflict is the one every process reports.
  const stored = await store.compareSet(duplicateKey(tag), "", JSON.stringify(record));
  return { twice: duplicateError(parseRecord(stored) ?? record, ctx), again: false };
}

/** The conflict published under barrier `tag`, as the error `ctx`'s process throws; null if none. */
export async function duplicateRank(
  store: Store,
  tag: string,
  ctx: { rank: number; op: string },
): Promise<RendezvousError | null> {
  const key = duplicateKey(tag);
  if (!(await store.check([key]))) return null;
  const record = parseRecord(await store.get(key));
  return record ? duplicateError(record, ctx) : null;
}

/** Options of {@link watchDuplicateRanks}. */
export interface DuplicateWatchOptions {
  /** This process's rank, named in the error. */
  rank: number;
  /** The barrier's tag (default `choir/join`, as joinBarrier's). */
  tag?: string;
  /**
   * Unused: the store tells the process's one background watch (key_watcher.ts) when the verdict is
   * published, so nothing polls. Kept so that existing callers compile.
   */
  intervalMs?: number;
  /**
   * Subscribe only when {@link DuplicateWatch.start} is called (default: at once). A caller that starts it
   * in the same turn as another subscription of the process's key watcher saves the store 3 requests.
   */
  deferred?: boolean;
}

/** A running watch started by {@link watchDuplicateRanks}. */
export interface DuplicateWatch {
  /** Resolves with the error to report once a duplicate rank is published; never after stop(). */
  readonly found: Promise<RendezvousError>;
  /** Looks once, now (also after stop()): the error to report, or null when no rank was claimed twice. */
  now(): Promise<RendezvousError | null>;
  /**
   * Records that this rank has read the verdict and waits until all `size` ranks have, or `waitMs`
   * passes: then every rank knows it before any breaks its links (a rank that sees a peer's links
   * close reports the verdict, not the closed link). Never throws.
   */
  seen(size: number, waitMs: number): Promise<void>;
  /** Starts watching, where created `deferred` (idempotent; nothing after stop()). */
  start(): void;
  /** Stops looking (idempotent). */
  stop(): void;
}

/**
 * Watches for a published duplicate rank for as long as the job runs, so that a process claiming a
 * rank after the job started stops every rank, not only itself. The watch is the process's shared
 * background watch of the store (key_watcher.ts): no polling, and it never keeps the process alive;
 * a store error ends it quietly (the store is gone with the job).
 */
export function watchDuplicateRanks(store: Store, opts: DuplicateWatchOptions): DuplicateWatch {
  const tag = opts.tag ?? "choir/join";
  let stopped = false;
  let resolve!: (e: RendezvousError) => void;
  const found = new Promise<RendezvousError>((r) => resolve = r);
  const now = () => duplicateRank(store, tag, { rank: opts.rank, op: "joinBarrier" });
  let sub: KeySubscription | null = null;
  const start = () => {
    if (sub !== null || stopped) return;
    sub = onKeySet(store, duplicateKey(tag), async () => {
      try {
        const err = await now();
        if (err && !stopped) {
          stopped = true;
          resolve(err);
        }
      } catch { /* the store is gone with the job */ }
    });
  };
  if (!opts.deferred) start();
  const seen = async (size: number, waitMs: number) => {
    try {
      // A counter and one key: every rank waits on one key, however many ranks there are.
      if ((await store.add(`${tag}/seen/count`, 1)) >= size) await store.set(`${tag}/seen/all`, "1");
      await store.wait([`${tag}/seen/all`], waitMs);
    } catch { /* a rank that never reads it (gone, or failed before it could) */ }
  };
  return {
    found,
    now,
    seen,
    start,
    stop() {
      stopped = true;
      sub?.stop();
    },
  };
}

function duplicateError(r: DuplicateRecord, ctx: { rank: number; op: string }): RendezvousError {
  const who = (c: Claimant) => `pid ${c.pid}${c.host ? ` on ${c.host}` : ""}`;
  return new RendezvousError(
    `rank ${r.rank} joined twice: ${who(r.first)} and ${who(r.second)} were both started as rank ${r.rank} ` +
      `(every process of a job needs its own RANK)`,
    { ...ctx, peer: r.rank === ctx.rank ? undefined : r.rank },
  );
}

function parseClaimant(text: string): Claimant | null {
  try {
    const v = JSON.parse(text) as Partial<Claimant>;
    if (typeof v.host === "string" && typeof v.pid === "number" && typeof v.id === "string") {
      return { host: v.host, pid: v.pid, id: v.id };
    }
  } catch { /* not a claim */ }
  return null;
}

function parseRecord(bytes: Uint8Array): DuplicateRecord | null {
  try {
    const v = JSON.parse(dec.decode(bytes)) as Partial<DuplicateRecord>;
    const first = parseClaimant(JSON.stringify(v.first));
    const second = parseClaimant(JSON.stringify(v.second));
    if (typeof v.rank === "number" && first && second) return { rank: v.rank, first, second };
  } catch { /* not a record */ }
  return null;
}
