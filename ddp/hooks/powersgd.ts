/**
 * @module
 * The PowerSGD communication hook (Vogels et al., 2019): each gradient matrix M (n x m) is sent as
 * two low-rank factors P (n x r) and Q (m x r) found by one step of power iteration, with error
 * feedback (what the approximation missed is added to the next step's gradient). Vectors and
 * matrices too small to gain are averaged uncompressed. Needs `Parameter.shape` to see matrices.
 */

import type { Parameter, ParamTensor } from "../model.ts";
import type { GradBucket } from "./types.ts";

/** Options of {@link PowerSGDState}. */
export interface PowerSGDOptions {
  /** Rank r of the approximation (default 1). */
  matrixApproximationRank?: number;
  /** Synchronized steps averaged uncompressed before compression starts (default 2). */
  startIter?: number;
  /**
   * Compress a matrix only when `n * m >= (n + m) * r * minCompressionRate` (default 2); the
   * others travel uncompressed.
   */
  minCompressionRate?: number;
  /** Keep the error feedback (default true). */
  useErrorFeedback?: boolean;
  /** Reuse last step's Q as the start of the power iteration (default true). */
  warmStart?: boolean;
  /** Seed of the initial Q, the same on every rank (default 0). */
  seed?: number;
}

/** The state PowerSGD keeps between steps: per-parameter error and Q. Register it with the hook. */
export class PowerSGDState {
  /** Rank of the approximation. */
  readonly rank: number;
  /** First compressed step. */
  readonly startIter: number;
  /** Least compression rate worth compressing. */
  readonly minCompressionRate: number;
  /** Whether the error feedback is on. */
  readonly useErrorFeedback: boolean;
  /** Whether Q is reused. */
  readonly warmStart: boolean;
  /** Seed of the initial Q. */
  readonly seed: number;
  /** What the approximation missed, per parameter name. */
  readonly errors: Map<string, Float64Array> = new Map();
  /** The last Q, per parameter name. */
  readonly qs: Map<string, Float64Array> = new Map();

  /** A state with the given options. */
  constructor(opts: PowerSGDOptions = {}) {
    this.rank = opts.matrixApproximationRank ?? 1;
    this.startIter = opts.startIter ?? 2;
    this.minCompressionRate = opts.minCompressionRate ?? 2;
    this.useErrorFeedback = opts.useErrorFeedback ?? true;
    this.warmStart = opts.warmStart ?? true;
    this.seed = opts.seed ?? 0;
  }
}

interface Mat {
  p: Parameter;
  view: ParamTensor;
  rows: number;
  cols: number;
  m: Float64Array;
  q: Float64Array;
}

/**
 * Averages the bucket with PowerSGD once `bucket.iteration >= state.startIter` (plain average
 * before, and for half-precision buckets). Per step it sends `r (n + m)` numbers per compressed
 * matrix instead of `n m`.
 */
export async function powerSGDHook(state: PowerSGDState, bucket: GradBucket): Promise<ParamTensor> {
  const buf = bucket.buffer;
  if (bucket.iteration < state.startIter || buf instanceof Uint16Array) {
    const dtype = bucket.dtype === "f16" || bucket.dtype === "bf16" ? bucket.dtype : undefined;
    await bucket.group.allReduce(buf, { op: "avg", dtype });
    return buf;
  }
  const r = state.rank;
  const mats: Mat[] = [];
  const plain: { view: ParamTensor; p: Parameter }[] = [];
  bucket.parameters.forEach((p, k) => {
    const len = p.grad.length;
    const view = buf.subarray(bucket.offsets[k], bucket.offsets[k] + len);
    if (state.useErrorFeedback) {
      const e = state.errors.get(p.name);
      if (e) { for (let i = 0; i < len; i++) view[i] += e[i]; }
    }
    const rows = p.shape && p.shape.length >= 2 ? p.shape[0] : 0;
    const cols = rows ? len / rows : 0;
    if (!rows || rows * cols < (rows + cols) * r * state.minCompressionRate) {
      plain.push({ view, p });
      if (state.useErrorFeedback) state.errors.delete(p.name);
      return;
    }
    let q = state.qs.get(p.name);
    if (!q || !state.warmStart) q = randomQ(cols * r, state.seed, p.name, bucket.iteration);
    mats.push({ p, view, rows, cols, m: Float64Array.from(view), q });
  });
  // Uncompressed part and P travel first (issued in this order on every rank).
  const flatLen = plain.reduce((s, x) => s + x.view.length, 0);
  const flat = new Float32Array(flatLen);
  let o = 0;
  for (const x of plain) flat.set(x.view, (o += x.view.length) - x.view.length);
  const pending: Promise<void>[] = [];
  if (flatLen) pending.push(bucket.group.allReduce(flat, { op: "avg" }));
  const ps = mats.map((x) => matmul(x.m, x.rows, x.cols, x.q, r));
  const pAll = concat(ps);
  if (mats.length) pending.push(bucket.group.allReduce(pAll, { op: "sum" }));
  await Promise.all(pending);
  o = 0;
  for (const x of plain) x.view.set(flat.subarray(o, o += x.view.length));
  if (!mats.length) return buf;
  split(pAll, ps);
  for (let k = 0; k < mats.length; k++) orthogonalize(ps[k], mats[k].rows, r);
  const qs = mats.map((x, k) => matmulT(x.m, x.rows, x.cols, ps[k], r));
  const qAll = concat(qs);
  await bucket.group.allReduce(qAll, { op: "avg" });
  split(qAll, qs);
  mats.forEach((x, k) => {
    const p = ps[k], q = qs[k];
    const err = state.useErrorFeedback ? new Float64Array(x.m.length) : null;
    for (let i = 0; i < x.rows; i++) {
      for (let j = 0; j < x.cols; j++) {
        let s = 0;
        for (let c = 0; c < r; c++) s += p[i * r + c] * q[j * r + c];
        const at = i * x.cols + j;
        if (err) err[at] = x.m[at] - s;
        x.view[at] = s;
      }
    }
    if (err) state.errors.set(x.p.name, err);
    state.qs.set(x.p.name, Float64Array.from(q));
  });
  return buf;
}

/** P = M Q, M rows x cols, Q cols x r. */
function matmul(m: Float64Array, rows: number, cols: number, q: Float64Array, r: number): Float32Array {
  const p = new Float32Array(rows * r);
  for (let i = 0; i < rows; i++) {
    for (let c = 0; c < r; c++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += m[i * cols + j] * q[j * r + c];
      p[i * r + c] = s;
    }
  }
  return p;
}

/** Q = M^T P, M rows x cols, P rows x r. */
function matmulT(m: Float64Array, rows: number, cols: number, p: Float32Array, r: number): Float32Array {
  const q = new Float32Array(cols * r);
  for (let j = 0; j < cols; j++) {
    for (let c = 0; c < r; c++) {
      let s = 0;
      for (let i = 0; i < rows; i++) s += m[i * cols + j] * p[i * r + c];
      q[j * r + c] = s;
    }
  }
  return q;
}

/** Gram-Schmidt on the r columns of P (rows x r), in place. */
function orthogonalize(p: Float32Array, rows: number, r: number): void {
  for (let c = 0; c < r; c++) {
    for (let d = 0; d < c; d++) {
      let dot = 0;
      for (let i = 0; i < rows; i++) dot += p[i * r + c] * p[i * r + d];
      for (let i = 0; i < rows; i++) p[i * r + c] -= dot * p[i * r + d];
    }
    let norm = 0;
    for (let i = 0; i < rows; i++) norm += p[i * r + c] * p[i * r + c];
    norm = Math.sqrt(norm) + 1e-8;
    for (let i = 0; i < rows; i++) p[i * r + c] /= norm;
  }
}

function concat(parts: Float32Array[]): Float32Array {
  const all = new Float32Array(parts.reduce((s, x) => s + x.length, 0));
  let o = 0;
  for (const x of parts) all.set(x, (o += x.length) - x.length);
  return all;
}

function split(all: Float32Array, parts: Float32Array[]): void {
  let o = 0;
  for (const x of parts) x.set(all.subarray(o, o += x.length));
}

/** A random Q, the same on every rank for the same seed, name and step. */
function randomQ(n: number, seed: number, name: string, iter: number): Float64Array {
  let s = (seed ^ Math.imul(iter + 1, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < name.length; i++) s = Math.imul(s ^ name.charCodeAt(i), 0x01000193) >>> 0;
  const q = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x9e3779b9) >>> 0;
    let z = Math.imul(s ^ (s >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    q[i] = ((z ^ (z >>> 16)) >>> 0) / 4294967296 - 0.5;
  }
  return q;
}
