/**
 * @module
 * Compression hooks: gradients travel as f16 or bf16 (half the bytes of f32), divided by the number
 * of ranks before the sum so it cannot overflow, and come back as the bucket's own type; and
 * {@link compressWrapper}, which runs any hook with its allreduces sent as halves.
 */

import type { ParamTensor } from "../model.ts";
import type { CommHook, GradBucket, HookGroup } from "./types.ts";

/** A 16-bit float format on the wire. */
export type HalfFormat = "f16" | "bf16";

/** Writes `src` as halves of `format` into `dst` (same length). */
export function toHalf(format: HalfFormat, src: Float32Array | Float64Array, dst: Uint16Array): void {
  if (format === "f16") {
    new Float16Array(dst.buffer, dst.byteOffset, dst.length).set(src);
    return;
  }
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i];
    const bits = u[0];
    dst[i] = (bits & 0x7fffffff) > 0x7f800000
      ? (bits >>> 16) | 0x40
      : (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
  }
}

/** Writes the halves `src` of `format` into `dst` (same length). */
export function fromHalf(format: HalfFormat, src: Uint16Array, dst: Float32Array | Float64Array): void {
  if (format === "f16") {
    dst.set(new Float16Array(src.buffer, src.byteOffset, src.length));
    return;
  }
  const u = new Uint32Array(1);
  const f = new Float32Array(u.buffer);
  for (let i = 0; i < src.length; i++) {
    u[0] = src[i] << 16;
    dst[i] = f[0];
  }
}

/** A group whose float allreduces travel as halves of `format`; halves pass through unchanged. */
function halfGroup(group: HookGroup, format: HalfFormat): HookGroup {
  return {
    rank: group.rank,
    size: group.size,
    async allReduce(tensor, opts = {}) {
      if (tensor instanceof Uint16Array) return group.allReduce(tensor, opts);
      const wire = new Uint16Array(tensor.length);
      if ((opts.op ?? "avg") === "avg") {
        const scaled = tensor instanceof Float64Array ? new Float64Array(tensor) : new Float32Array(tensor);
        for (let i = 0; i < scaled.length; i++) scaled[i] /= group.size;
        toHalf(format, scaled, wire);
      } else toHalf(format, tensor, wire);
      await group.allReduce(wire, { op: "sum", dtype: format });
      fromHalf(format, wire, tensor);
    },
  };
}

/**
 * Wraps `hook` so that every float allreduce it makes travels as `format` halves (averages are
 * divided before the sum). Stacks with any hook: `compressWrapper("f16", powerSGDHook)` sends
 * PowerSGD's factors as f16.
 */
export function compressWrapper<S>(format: HalfFormat, hook: CommHook<S>): CommHook<S> {
  return (state: S, bucket: GradBucket) => hook(state, { ...bucket, group: halfGroup(bucket.group, format) });
}

/** Averages the bucket sent as f16 (half the bytes of f32). */
export const fp16CompressHook: CommHook<unknown> = compressWrapper("f16", plainAverage);

/** Averages the bucket sent as bf16 (half the bytes of f32, the range of f32, fewer mantissa bits). */
export const bf16CompressHook: CommHook<unknown> = compressWrapper("bf16", plainAverage);

async function plainAverage(_state: unknown, bucket: GradBucket): Promise<ParamTensor> {
  await bucket.group.allReduce(bucket.buffer, { op: "avg" });
  return bucket.buffer;
}
