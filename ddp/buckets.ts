/**
 * @module
 * Gradient bucket assignment: groups parameters, in the order their gradients are expected to become
 * ready, into buckets of at most a byte cap (a smaller cap for the first one), one element type per
 * bucket. Used at construction (reverse parameter order) and when rebuilding from the observed order.
 */

/** Element type of a gradient as the collectives name it. */
export type GradDType = "f32" | "f64" | "f16" | "bf16";

/** What bucket assignment needs to know of a gradient. */
export interface GradSize {
  /** Element type. */
  readonly dtype: GradDType;
  /** Size in bytes. */
  readonly bytes: number;
}

/**
 * Assigns the gradients `order` (indices into `grads`, first-ready first) to buckets: a bucket is
 * closed when adding to it would pass its cap (`firstCapBytes` for the first bucket closed, `capBytes`
 * for later ones); parameters of different element types go to different buckets. A parameter larger
 * than a cap gets a bucket of its own. Returns the buckets as lists of parameter indices, in the order
 * they fill.
 */
export function assignBuckets(
  grads: readonly GradSize[],
  order: readonly number[],
  capBytes: number,
  firstCapBytes: number,
): number[][] {
  const done: number[][] = [];
  const open = new Map<GradDType, { idx: number[]; bytes: number }>();
  for (const i of order) {
    const { dtype, bytes } = grads[i];
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
