/**
 * @module
 * The slices of one chunk of a chunked arena collective: the chunk (`len` elements of the tensor from
 * `off`) is split into one slice per rank, and each slice has a place in every rank's chunk buffer of
 * the chunk's parity and a place in this rank's tensor.
 */

import { segment } from "../comm.ts";
import { type CpuTensor, sliceView, viewLike } from "../../dtype.ts";
import type { Arena } from "./shm_arena.ts";

/** Where slice `j` of a chunk lives. */
export interface ChunkSlices<T extends CpuTensor> {
  /** Slice `j` in rank `q`'s chunk buffer. */
  slot(q: number, j: number): T;
  /** Slice `j` in this rank's tensor. */
  mine(j: number): T;
}

/** The slices of the chunk of `buf` at element `off`, `len` long, in the arena's buffers of `parity`. */
export function chunkSlices<T extends CpuTensor>(
  a: Arena,
  buf: T,
  off: number,
  len: number,
  parity: number,
): ChunkSlices<T> {
  const n = a.size;
  const elem = buf.BYTES_PER_ELEMENT;
  return {
    slot(q, j) {
      const [js, jl] = segment(len, n, j);
      return viewLike(buf, a.buffer, a.inBuf(q, parity) + js * elem, jl);
    },
    mine(j) {
      const [js, jl] = segment(len, n, j);
      return sliceView(buf, off + js, jl);
    },
  };
}
