/**
 * @module
 * An all-gather of short strings through the store in O(1) requests per rank: each rank sets its value
 * and counts itself in; the rank that completes the count reads all values in one request and publishes
 * them as one table, run-length encoded (ranks of one host are usually consecutive, so a job's host ids
 * take a few bytes per host, not per rank); everyone reads that one key. Used for host ids.
 *
 * Keys under `tag`: `<tag>/<rank>` (each value), `<tag>/count`, `<tag>/all` (JSON {@link Table}).
 */

import { StoreError } from "../../errors.ts";
import type { Store } from "./store.ts";

/** The published table: distinct values and runs of [index into values, length]. */
interface Table {
  values: string[];
  runs: [number, number][];
}

const dec = new TextDecoder();

/** Every rank's `mine`, in rank order. Each of the `size` ranks calls it once with the same `tag`. */
export async function allGatherStrings(
  store: Store,
  rank: number,
  size: number,
  tag: string,
  mine: string,
  timeoutMs: number,
): Promise<string[]> {
  await store.set(`${tag}/${rank}`, mine);
  if ((await store.add(`${tag}/count`, 1)) === size) {
    const keys = Array.from({ length: size }, (_, r) => `${tag}/${r}`);
    const all = (await store.multiGet(keys, timeoutMs)).map((v) => dec.decode(v));
    await store.set(`${tag}/all`, JSON.stringify(encodeTable(all)));
  }
  const [table] = await store.multiGet([`${tag}/all`], timeoutMs);
  const out = decodeTable(dec.decode(table), size);
  if (!out) throw new StoreError(`the table under "${tag}/all" is garbled`, { rank, op: "allGatherStrings" });
  return out;
}

function encodeTable(all: readonly string[]): Table {
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
  return { values, runs };
}

function decodeTable(text: string, size: number): string[] | undefined {
  try {
    const t = JSON.parse(text) as Table;
    const out: string[] = [];
    for (const [i, n] of t.runs) for (let k = 0; k < n; k++) out.push(String(t.values[i]));
    return out.length === size ? out : undefined;
  } catch {
    return undefined;
  }
}
