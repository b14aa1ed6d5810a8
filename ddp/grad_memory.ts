/**
 * @module
 * Where DDP's gradients and buckets live: the few tensor operations the reducer needs (allocate, view,
 * copy, zero, scale, find a contiguous run), once for host typed arrays and once for GpuTensors (device
 * copies and memsets on the default stream, so they stay ordered with the model's kernels). Bucketing
 * and readiness are the reducer's; the collectives are the process group's.
 */

import { InvalidArgumentError } from "../errors.ts";
import { cublas, GpuTensor } from "../gpu/mod.ts";
import type { GradDType } from "./buckets.ts";
import type { ParamTensor } from "./model.ts";

/** A run of gradients that already sit back to back in one allocation. */
export interface ContiguousRun<T> {
  /** One tensor covering them all. */
  flat: T;
  /** Their indices (into the list given), in memory order. */
  order: number[];
  /** Where each of them (in `order`) starts in `flat`, in elements. */
  offsets: number[];
}

/** The tensor operations DDP's reducer uses, for one kind of tensor `T`. */
export interface GradMemory<T> {
  /** Whether the memory is on a GPU. */
  readonly gpu: boolean;
  /** The element type of a gradient (`hint`: a parameter's `dtype`, for Uint16Array halves). */
  dtypeOf(grad: T, hint?: string): GradDType;
  /** Elements in `t`. */
  length(t: T): number;
  /** Bytes in `t`. */
  byteLength(t: T): number;
  /** New zeroed memory of `length` elements, on the device of `like`. */
  alloc(dtype: GradDType, length: number, like: T): T;
  /** `length` elements of `t` from element `offset` (shared memory). */
  view(t: T, offset: number, length: number): T;
  /** `dst <- src` (same length). */
  copy(dst: T, src: T): void;
  /** A copy of `t` in new memory (free it with {@link GradMemory.release}). */
  clone(t: T): T;
  /** Sets `t` to zero. */
  zero(t: T): void;
  /** `t *= factor`. */
  scale(t: T, dtype: GradDType, factor: number): void;
  /** Whether `a` and `b` are the same memory. */
  same(a: T, b: T): boolean;
  /** `grads` as one tensor when they sit back to back in one allocation (in some order), else null. */
  contiguous(grads: readonly T[]): ContiguousRun<T> | null;
  /** Frees memory from {@link GradMemory.alloc} or {@link GradMemory.clone} (host: nothing to do). */
  release(t: T): void;
}

/** Host gradients: typed arrays. */
export const hostMemory: GradMemory<ParamTensor> = {
  gpu: false,
  dtypeOf: (g, hint) =>
    g instanceof Float32Array ? "f32" : g instanceof Float64Array ? "f64" : hint === "bf16" ? "bf16" : "f16",
  length: (t) => t.length,
  byteLength: (t) => t.byteLength,
  alloc: (dtype, length) =>
    dtype === "f32"
      ? new Float32Array(length)
      : dtype === "f64"
      ? new Float64Array(length)
      : new Uint16Array(length),
  view: (t, offset, length) => t.subarray(offset, offset + length),
  copy: (dst, src) => dst.set(src),
  clone: (t) => t.slice(),
  zero: (t) => t.fill(0),
  scale: scaleHost,
  same: (a, b) => a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.length === b.length,
  contiguous(grads) {
    if (grads.length === 0) return null;
    const order = grads.map((_, i) => i).sort((a, b) => grads[a].byteOffset - grads[b].byteOffset);
    const first = grads[order[0]];
    let at = first.byteOffset;
    const offsets: number[] = [];
    for (const i of order) {
      const g = grads[i];
      if (g.buffer !== first.buffer || g.byteOffset !== at || g.constructor !== first.constructor) {
        return null;
      }
      offsets.push((at - first.byteOffset) / g.BYTES_PER_ELEMENT);
      at += g.byteLength;
    }
    const len = (at - first.byteOffset) / first.BYTES_PER_ELEMENT;
    const Ctor = first.constructor as Float32ArrayConstructor;
    return { flat: new Ctor(first.buffer, first.byteOffset, len), order, offsets };
  },
  release: () => {},
};

/** GPU gradients: GpuTensors (views of one allocation count as contiguous when they are adjacent). */
export const gpuMemory: GradMemory<GpuTensor> = {
  gpu: true,
  dtypeOf(g) {
    if (g.dtype === "f32" || g.dtype === "f64" || g.dtype === "f16" || g.dtype === "bf16") return g.dtype;
    throw new InvalidArgumentError(`a gradient of dtype ${g.dtype} (DDP averages float gradients only)`, {
      op: "DistributedDataParallel",
    });
  },
  length: (t) => t.length,
  byteLength: (t) => t.byteLength,
  alloc: (dtype, length, like) => GpuTensor.zeros(dtype, length, like.device),
  view: (t, offset, length) => t.view(offset, length),
  copy: (dst, src) => dst.copyFrom(src),
  clone(t) {
    const c = GpuTensor.empty(t.dtype, t.length, t.device);
    c.copyFrom(t);
    return c;
  },
  zero: (t) => t.zero(),
  scale(t, dtype, factor) {
    if (dtype === "f32") return cublas(t.device).sscal(t.length, factor, t.ptr);
    // Rare (joined ranks with halves or doubles): through the host.
    const host = t.toHost() as ParamTensor;
    scaleHost(host, dtype, factor);
    t.copyFromHost(host);
  },
  same: (a, b) => a.device === b.device && a.ptr === b.ptr && a.byteLength === b.byteLength,
  contiguous(grads) {
    if (grads.length === 0) return null;
    const order = grads.map((_, i) => i).sort((a, b) => (grads[a].ptr < grads[b].ptr ? -1 : 1));
    const first = grads[order[0]];
    const base = first.base;
    let at = first.ptr;
    const offsets: number[] = [];
    const es = first.byteLength / Math.max(1, first.length);
    for (const i of order) {
      const g = grads[i];
      if (g.base !== base || g.dtype !== first.dtype || g.ptr !== at) return null;
      offsets.push(Number(at - first.ptr) / es);
      at += BigInt(g.byteLength);
    }
    const start = Number(first.ptr - base.ptr) / es;
    return { flat: base.view(start, Number(at - first.ptr) / es), order, offsets };
  },
  release: (t) => t.free(),
};

/** `g *= factor` for host gradients of `dtype` (halves through f32, rounded to nearest even). */
function scaleHost(g: ParamTensor, dtype: GradDType, factor: number): void {
  if (!(g instanceof Uint16Array)) {
    for (let i = 0; i < g.length; i++) g[i] *= factor;
  } else if (dtype === "f16") {
    const h = new Float16Array(g.buffer, g.byteOffset, g.length);
    for (let i = 0; i < h.length; i++) h[i] *= factor;
  } else {
    const u = new Uint32Array(1);
    const f = new Float32Array(u.buffer);
    for (let i = 0; i < g.length; i++) {
      u[0] = g[i] << 16;
      f[0] *= factor;
      g[i] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16;
    }
  }
}
