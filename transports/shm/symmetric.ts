/**
 * @module
 * Symmetric allocations: every rank of a host group creates one segment of the same size and maps
 * every peer's, so collectives can read and write all ranks' arrays in place. Names travel through
 * the store; each segment's name is unlinked once every rank has mapped it. What is computed on the
 * memory is left to the collectives.
 */

import { TransportError } from "../../errors.ts";
import type { Store } from "../store/store.ts";
import { libc } from "./libc.ts";
import { Segment } from "./segment.ts";

/** One allocation: the same number of bytes on every rank, all mapped in this process. */
export interface SymmetricAllocation {
  /** Allocation number (the same on every rank: allocations are collective and ordered). */
  readonly index: number;
  /** Bytes per rank. */
  readonly bytes: number;
  /** Every rank's memory, by rank; `buffers[rank]` is this rank's own. */
  readonly buffers: readonly ArrayBuffer[];
  /** Releases every mapping (views left over read zeros; they never crash the process). */
  close(): void;
}

/** What {@link allocSymmetric} needs. */
export interface SymmetricOptions {
  /** This rank within the host group. */
  rank: number;
  /** Ranks in the host group. */
  size: number;
  /** Store shared by the group (prefixed per group). */
  store: Store;
  /** Allocation number, the same on every rank. */
  index: number;
  /** Bytes per rank (at least 1). */
  bytes: number;
}

/** Creates this rank's segment, maps everyone's, and unlinks its own name once all have mapped it. */
export async function allocSymmetric(o: SymmetricOptions): Promise<SymmetricAllocation> {
  const lib = libc();
  const ctx = { rank: o.rank };
  const rand = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  const mine = Segment.create(lib, `/choir-sym-${rand}-a${o.index}-r${o.rank}`, o.bytes, ctx);
  const segments: Segment[] = [];
  try {
    await o.store.set(`sym/${o.index}/name/${o.rank}`, mine.name);
    const dec = new TextDecoder();
    for (let q = 0; q < o.size; q++) {
      if (q === o.rank) segments.push(mine);
      else {
        const name = dec.decode(await o.store.get(`sym/${o.index}/name/${q}`));
        segments.push(Segment.open(lib, name, o.bytes, ctx));
      }
    }
    // Everyone has mapped everyone's: the names can go, the mappings stay.
    await o.store.set(`sym/${o.index}/mapped/${o.rank}`, "1");
    await o.store.wait(Array.from({ length: o.size }, (_, q) => `sym/${o.index}/mapped/${q}`));
    mine.unlink();
  } catch (e) {
    mine.unlink();
    for (const s of segments) s.unmap();
    if (!segments.includes(mine)) mine.unmap();
    throw e instanceof Error ? e : new TransportError(String(e), { rank: o.rank, op: "alloc" });
  }
  return {
    index: o.index,
    bytes: o.bytes,
    buffers: segments.map((s) => s.buffer),
    close: () => segments.forEach((s) => s.unmap()),
  };
}
