/**
 * @module
 * The memory of one group of Worker ranks: the shm transport's layout (rings, doorbells, arena) in a
 * shared `WebAssembly.Memory`, whose buffer is a SharedArrayBuffer every Worker of the group holds.
 * Handing it to the ranks is left to the hub (spawn.ts).
 */

import { TransportError } from "../../errors.ts";
import { defaultArenaBytes, defaultRingBytes, Layout, LAYOUT_VERSION, SEGMENT_MAGIC } from "../shm/layout.ts";

const PAGE = 65536;

/** What a group's memory is made for; every member asks with the same values. */
export interface SegmentSpec {
  /** Number of ranks. */
  size: number;
  /** Bytes of each ring (power of two); default as for shm. */
  ringBytes?: number;
  /** Bytes of the arena; default as for shm. */
  arenaBytes?: number;
}

/** Allocates and formats the memory of a group described by `spec`. */
export function makeSegment(spec: SegmentSpec): WebAssembly.Memory {
  const arena = spec.arenaBytes ?? defaultArenaBytes(spec.size);
  const layout = new Layout(spec.size, spec.ringBytes ?? defaultRingBytes(spec.size, arena), arena);
  const pages = Math.max(1, Math.ceil(layout.totalBytes / PAGE));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const dv = new DataView(memory.buffer);
  dv.setUint32(layout.magic, SEGMENT_MAGIC, true);
  dv.setUint32(layout.version, LAYOUT_VERSION, true);
  dv.setUint32(layout.sizeWord, layout.size, true);
  dv.setUint32(layout.ringWord, layout.ringBytes, true);
  dv.setUint32(layout.arenaWord, layout.arenaBytes, true);
  return memory;
}

/** The layout of a memory made by {@link makeSegment}; TransportError if it is not one for `size` ranks. */
export function layoutOf(memory: WebAssembly.Memory, size: number, rank: number): Layout {
  const dv = new DataView(memory.buffer);
  const ok = memory.buffer.byteLength >= 64 && dv.getUint32(0, true) === SEGMENT_MAGIC &&
    dv.getUint32(4, true) === LAYOUT_VERSION && dv.getUint32(8, true) === size;
  if (!ok) {
    throw new TransportError(`the Worker segment handed over is not one for ${size} ranks`, {
      rank,
      op: "worker.attach",
    });
  }
  const layout = new Layout(size, dv.getUint32(12, true), dv.getUint32(24, true));
  if (layout.totalBytes > memory.buffer.byteLength) {
    throw new TransportError("the Worker segment is smaller than its layout", { rank, op: "worker.attach" });
  }
  return layout;
}
