/**
 * @module
 * Symmetric allocations: every rank of a host group creates one segment of the same size and maps
 * every peer's, so collectives can read and write all ranks' arrays in place. The n mappings are
 * placed side by side inside one fixed-size `WebAssembly.Memory` (mmap MAP_FIXED over its pages),
 * so WebAssembly kernels can reduce them where they are. Names travel through the store; each
 * segment's name is unlinked once every rank has mapped it, and until then its creator holds its owner
 * slot, so a segment whose creator was killed meanwhile is swept by the next process (sweep.ts). What
 * is computed on the memory is left to the collectives.
 */

import { TransportError } from "../../errors.ts";
import type { Store } from "../store/store.ts";
import { libc } from "./libc.ts";
import { jobTag, Segment } from "./segment.ts";
import { sweepAtStartup } from "./sweep.ts";

/** A WebAssembly page. */
const WASM_PAGE = 64 * 1024;
/** The most pages a 32-bit WebAssembly memory may have (4 GiB). */
const MAX_PAGES = 65536;

/** One allocation: the same number of bytes on every rank, all mapped in this process. */
export interface SymmetricAllocation {
  /** Allocation number (the same on every rank: allocations are collective and ordered). */
  readonly index: number;
  /** Bytes per rank. */
  readonly bytes: number;
  /** The WebAssembly memory holding every rank's mapping. */
  readonly memory: WebAssembly.Memory;
  /** `memory.buffer`, which every rank's array views. */
  readonly buffer: ArrayBuffer;
  /** Byte offset of each rank's mapping in {@link buffer}; `offsets[rank]` is this rank's own. */
  readonly offsets: readonly number[];
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
  /** The job id, part of the segment names (so the launcher can sweep them after a crash). */
  jobId?: string;
}

/** The largest `bytes` per rank that {@link allocSymmetric} can place for `size` ranks. */
function maxSymmetricBytes(size: number): number {
  return Math.floor(MAX_PAGES / size) * WASM_PAGE;
}

/** Creates this rank's segment, maps everyone's, and unlinks its own name once all have mapped it. */
export async function allocSymmetric(o: SymmetricOptions): Promise<SymmetricAllocation> {
  const lib = libc();
  const ctx = { rank: o.rank };
  const stride = Math.ceil(o.bytes / WASM_PAGE) * WASM_PAGE;
  if (stride * o.size > MAX_PAGES * WASM_PAGE) {
    throw new TransportError(
      `symmetric allocation of ${o.bytes} bytes per rank does not fit: at most ${
        maxSymmetricBytes(o.size)
      } for ${o.size} ranks`,
      { rank: o.rank, op: "alloc" },
    );
  }
  // Fixed size (it must never grow: growing would move the pages the segments are mapped over).
  const pages = (stride * o.size) / WASM_PAGE;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  const base = Deno.UnsafePointer.of(memory.buffer);
  if (base === null) throw new TransportError("no address for the WebAssembly memory", { rank: o.rank });
  const at = (q: number) => Deno.UnsafePointer.offset(base, q * stride)!;
  const rand = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  const name = `/choir-${await jobTag(o.jobId)}s${o.index}-r${o.rank}-${rand}`;
  sweepAtStartup(lib);
  const mine = Segment.create(lib, name, stride, ctx, 0, at(o.rank));
  const segments: Segment[] = [];
  try {
    await o.store.set(`sym/${o.index}/name/${o.rank}`, mine.name);
    const dec = new TextDecoder();
    for (let q = 0; q < o.size; q++) {
      if (q === o.rank) segments.push(mine);
      else {
        const name = dec.decode(await o.store.get(`sym/${o.index}/name/${q}`));
        const s = Segment.open(lib, name, stride, ctx, at(q));
        s.closeFd(); // the mapping is what counts; the owner's slot is the owner's
        segments.push(s);
      }
    }
    // Everyone has mapped everyone's: the names can go, the mappings stay.
    await o.store.set(`sym/${o.index}/mapped/${o.rank}`, "1");
    await o.store.wait(Array.from({ length: o.size }, (_, q) => `sym/${o.index}/mapped/${q}`));
    mine.unlink();
    mine.closeFd();
  } catch (e) {
    mine.unlink();
    mine.closeFd();
    for (const s of segments) s.unmap();
    if (!segments.includes(mine)) mine.unmap();
    throw e instanceof Error ? e : new TransportError(String(e), { rank: o.rank, op: "alloc" });
  }
  return {
    index: o.index,
    bytes: o.bytes,
    memory,
    buffer: memory.buffer as ArrayBuffer, // not shared: created without `shared: true`
    offsets: Array.from({ length: o.size }, (_, q) => q * stride),
    close: () => segments.forEach((s) => s.unmap()),
  };
}
