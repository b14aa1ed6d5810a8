/**
 * @module
 * Allreduce on symmetric memory (`pg.alloc` buffers): every rank's array is mapped in every process,
 * side by side in one WebAssembly memory, so rank r reduces slice r of all n arrays with the SIMD
 * kernels where they lie and writes the result into all n arrays. No copy in, no copy out; two arena
 * handshakes (inputs ready, results written).
 *
 * The slice goes in blocks that stay in this core's cache: each block is summed in rank order into
 * rank 0's array, then copied from there (still cached) into the others, so every byte crosses the
 * memory bus about once each way.
 *
 * Cost: 2 handshakes + one pass reading n*S/n and writing n*S/n bytes per rank.
 */

import type { Call } from "../comm.ts";
import { segment } from "../comm.ts";
import { bytesOf, type CpuTensor } from "../../dtype.ts";
import { reduceInto } from "../kernels/mod.ts";
import { bindKernels, kernelOpOf, type KernelTable } from "../kernels/wasm_reducer.ts";
import type { Arena, Fingerprint, WaitContext } from "./shm_arena.ts";

/** Bytes per block: small enough that a block of every rank stays in L2 between reduce and copy. */
const BLOCK = 64 * 1024;

/** Every rank's mapping of one symmetric allocation, as the collective sees it. */
export interface SymmetricView {
  /** The WebAssembly memory holding every rank's array. */
  readonly memory: WebAssembly.Memory;
  /** Its buffer (the one user tensors view). */
  readonly buffer: ArrayBuffer;
  /** Byte offset of each rank's array in {@link buffer}. */
  readonly offsets: readonly number[];
}

const kernels = new WeakMap<WebAssembly.Memory, KernelTable>();

function kernelsOf(memory: WebAssembly.Memory): KernelTable {
  let k = kernels.get(memory);
  if (!k) kernels.set(memory, k = bindKernels(memory));
  return k;
}

/**
 * Reduces `buf` (this rank's view into its array of `sym`) across the host group; every rank must
 * pass a view at the same offset in its own array, with the same length. `fp` carries the allocation
 * and the offset, so ranks that disagree fail at the first handshake, before any rank writes.
 */
export async function allReduceSymmetric(
  a: Arena,
  call: Call,
  fp: Fingerprint,
  sym: SymmetricView,
  buf: CpuTensor,
  ctx: WaitContext,
): Promise<void> {
  await a.handshake(fp, ctx); // every rank's input is in place
  reduceSlice(a.rank, a.size, call, sym, buf);
  await a.handshake(fp, ctx); // every slice is written everywhere
}

/** Reduces slice `rank` of every rank's array and writes the result into all of them. */
function reduceSlice(rank: number, n: number, call: Call, sym: SymmetricView, buf: CpuTensor): void {
  const [start, len] = segment(buf.length, n, rank);
  if (len === 0) return;
  const elem = buf.BYTES_PER_ELEMENT;
  // Where the slice starts relative to the start of each rank's array.
  const rel = buf.byteOffset - sym.offsets[rank] + start * elem;
  const op = call.op ?? "sum";
  const kernel = kernelsOf(sym.memory).binary[call.dtype]?.[kernelOpOf(op)];
  if (!kernel) {
    // No SIMD kernel for this pair: the general kernels on views (same result, more passes).
    const ctor = buf.constructor as new (b: ArrayBuffer, off: number, l: number) => CpuTensor;
    const views = sym.offsets.map((o) => new ctor(sym.buffer, o + rel, len));
    for (let q = 1; q < n; q++) reduceInto(call.dtype, op, views[0], views[q]);
    for (let q = 1; q < n; q++) bytesOf(views[q]).set(bytesOf(views[0]));
    return;
  }
  const bytes = new Uint8Array(sym.buffer);
  const step = Math.max(1, Math.floor(BLOCK / elem));
  const o = sym.offsets;
  for (let i = 0; i < len; i += step) {
    const count = Math.min(step, len - i);
    const at = rel + i * elem;
    const acc = o[0] + at;
    for (let q = 1; q < n; q++) kernel(acc, o[q] + at, count);
    const end = acc + count * elem;
    for (let q = 1; q < n; q++) bytes.copyWithin(o[q] + at, acc, end);
  }
}
