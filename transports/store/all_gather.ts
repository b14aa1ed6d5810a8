/**
 * @module
 * An all-gather of short strings through the store (used for host ids): the distinct values and each
 * rank's index into them. The TCP store does it in one request per rank ({@link Store.gather}: the
 * server counts the ranks in and answers every waiter with the table it builds once); other stores
 * take 3 requests per rank (set, add, read the table) and 2 more for the rank that completes the count.
 * The table is run-length encoded (ranks of one host are usually consecutive, so a job's host ids take
 * a few bytes per host, not per rank). A timeout names the ranks that never sent their value.
 *
 * Keys under `tag`: `<tag>/<rank>` (each value), `<tag>/count`, `<tag>/all` (the JSON {@link Table}).
 */

import { StoreError, StoreTimeoutError } from "../../errors.ts";
import type { Gathered, Gathering, Store } from "./store.ts";
import { waitTimeout } from "./store_util.ts";

/** The published table: distinct values and runs of [index into values, length]. */
interface Table {
  values: string[];
  runs: [number, number][];
}

/** Most ranks one gather may count (a bound on what a request can make the server build). */
export const GATHER_MAX_SIZE = 1 << 20;
/** Longest value one rank may send, UTF-16 units (host ids are well under it). */
export const GATHER_MAX_VALUE = 4096;

const dec = new TextDecoder();

/** The key rank `rank`'s value is stored under. */
export function gatherKey(tag: string, rank: number): string {
  return `${tag}/${rank}`;
}

/** The key of the published table. */
export function gatherTableKey(tag: string): string {
  return `${tag}/all`;
}

/** The key of the count of ranks in. */
export function gatherCountKey(tag: string): string {
  return `${tag}/count`;
}

/**
 * Why `g` is not a gathering a server or store should act on (rank out of range, oversized value or
 * size), or null when it is one.
 */
export function badGathering(g: Gathering): string | null {
  if (typeof g.tag !== "string" || g.tag.length === 0) return "the tag must be a non-empty string";
  if (!Number.isSafeInteger(g.size) || g.size < 1 || g.size > GATHER_MAX_SIZE) {
    return `size must be an integer in 1..${GATHER_MAX_SIZE}, not ${g.size}`;
  }
  if (!Number.isSafeInteger(g.rank) || g.rank < 0 || g.rank >= g.size) {
    return `rank must be an integer in 0..${g.size - 1}, not ${g.rank}`;
  }
  if (typeof g.value !== "string" || g.value.length > GATHER_MAX_VALUE) {
    return `the value must be a string of at most ${GATHER_MAX_VALUE} characters`;
  }
  return null;
}

/**
 * Every rank's value of the gathering `g` (each of `g.size` ranks calls it once with the same tag and
 * size): in one call where the store has {@link Store.gather}, else as set, add and read. Throws
 * StoreTimeoutError naming the ranks' keys still missing after `timeoutMs` (default: the store's).
 */
export async function gatherAt(store: Store, g: Gathering, timeoutMs?: number): Promise<Gathered> {
  if (typeof store.gather === "function") return await store.gather(g, timeoutMs);
  const ctx = { rank: g.rank, op: "store.gather" };
  const bad = badGathering(g);
  if (bad !== null) throw new StoreError(`bad gathering: ${bad}`, ctx);
  await store.set(gatherKey(g.tag, g.rank), g.value);
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const keys = () => Array.from({ length: g.size }, (_, r) => gatherKey(g.tag, r));
  try {
    if ((await store.add(gatherCountKey(g.tag), 1)) === g.size) {
      const all = (await store.multiGet(keys(), timeoutMs)).map((v) => dec.decode(v));
      await store.set(gatherTableKey(g.tag), encodeTable(all));
    }
    const left = deadline === undefined ? undefined : Math.max(0, deadline - Date.now());
    const [table] = await store.multiGet([gatherTableKey(g.tag)], left);
    return decodedOrThrow(dec.decode(table), g, "the store");
  } catch (err) {
    if (!(err instanceof StoreTimeoutError)) throw err;
    // Name the ranks that never sent their value (one more request, on the failure path only).
    const all = keys();
    const set = new Set(await store.watch(all, 0));
    throw waitTimeout(all.filter((k) => !set.has(k)), timeoutMs, ctx);
  }
}

/** The table of `all` (every rank's value in rank order), as published under `<tag>/all`. */
export function encodeTable(all: readonly string[]): string {
  const values: string[] = [];
  const index = new Map<string, number>();
  const runs: [number, number][] = [];
  for (const v of all) {
    let i = index.get(v);
    if (i === undefined) index.set(v, i = values.push(v) - 1);
    const last = runs[runs.length - 1];
    if (last && last[0] === i) last[1]++;
    else runs.push([i, 1]);
  }
  return JSON.stringify({ values, runs } satisfies Table);
}

/** The decoded table, or a StoreError naming `from` when it is garbled or has the wrong size. */
export function decodedOrThrow(text: string, g: Gathering, from: string): Gathered {
  const out = decodeTable(text, g.size);
  if (out === undefined) {
    throw new StoreError(`${from} sent a garbled table for "${gatherTableKey(g.tag)}"`, {
      rank: g.rank,
      op: "store.gather",
    });
  }
  return out;
}

/**
 * The last table decoded, returned again for the same text: the ranks of one process (the scale
 * harness's simulated ranks, worker ranks, a job's groups over the same hosts) share one decoded copy
 * instead of N each. Callers treat it as read-only.
 */
let lastDecoded: { text: string; size: number; out: Gathered } | undefined;

/** A table's compact form (shared, read-only): one Int32Array of indices; undefined when garbled. */
function decodeTable(text: string, size: number): Gathered | undefined {
  if (lastDecoded?.text === text && lastDecoded.size === size) return lastDecoded.out;
  const out = decodeFresh(text, size);
  if (out !== undefined) lastDecoded = { text, size, out };
  return out;
}

function decodeFresh(text: string, size: number): Gathered | undefined {
  let t: Partial<Table>;
  try {
    t = JSON.parse(text);
  } catch {
    return undefined;
  }
  const { values, runs } = t;
  if (!Array.isArray(values) || !Array.isArray(runs) || !values.every((v) => typeof v === "string")) {
    return undefined;
  }
  const index = new Int32Array(size);
  let at = 0;
  for (const run of runs as unknown[]) {
    const [i, n]: unknown[] = Array.isArray(run) ? run : [];
    if (typeof i !== "number" || !Number.isSafeInteger(i) || i < 0 || i >= values.length) return undefined;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1 || at + n > size) return undefined;
    index.fill(i, at, at + n);
    at += n;
  }
  return at === size ? { values, index } : undefined;
}
