/**
 * @module
 * Gradient bucket assignment: groups parameters, in the order their gradients are expected to become
 * ready, into buckets of at most a byte cap (a smaller cap for the first one), one element type per
 * bucket. Used at construction (reverse parameter order) and when rebuilding from the observed order.
 */

import type { Parameter, ParamTensor } from "./model.ts";

/** Element type of a gradient as the collectives name it. */
export type GradDType = "f32" | "f64" | "f16" | "bf16";

/** The element type of a parameter's gradient. */
export function gradDType(p: Parameter): GradDType {
  if (p.grad instanceof Float32Array) return "f32";
  if (p.grad instanceof Float64Array) return "f64";
  return p.dtype === "bf16" ? "bf16" : "f16";
}

/** A new zeroed tensor of `dtype` with `length` elements. */
export function tensorOf(dtype: GradDType, length: number): ParamTensor {
  if (dtype === "f32") return new Float32Array(length);
  if (dtype === "f64") return new Float64Array(length);
  return new Uint16Array(length);
}

/**
 * Assigns the parameters `order` (indices into `params`, first-ready first) to buckets: a bucket is
 * closed when adding to it would pass its cap (`firstCapBytes` for the first bucket closed, `capBytes`
 * for later ones); parameters of different element types go to different buckets. A parameter larger
 * than a cap gets a bucket of its own. Returns the buckets as lists of parameter indices, in the order
 * they fill.
 */
export function assignBuckets(
  params: readonly Parameter[],
  order: readonly number[],
  capBytes: number,
  firstCapBytes: number,
): number[][] {
  const done: number[][] = [];
  const open = new Map<GradDType, { idx: number[]; bytes: number }>();
  for (const i of order) {
    const dtype = gradDType(params[i]);
    const bytes = params[i].grad.byteLength;
    let b = open.get(dtype);
    const cap = done.length === 0 ? firstCapBytes : capBytes;
    if (b && b.idx.length > 0 && b.bytes + bytes > cap) {
      done.push(b.idx);
      b = undefined;
    }
    if (!b) open.set(dtype, b = { idx: [], bytes: 0 });
    b.idx.push(i);
    b.bytes += bytes;
  }
  // Open buckets close in the order their first parameter became ready.
  const rest = [...open.values()].filter((b) => b.idx.length > 0);
  rest.sort((a, b) => order.indexOf(a.idx[0]) - order.indexOf(b.idx[0]));
  for (const b of rest) done.push(b.idx);
  return done;
}
