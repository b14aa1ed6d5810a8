/**
 * @module
 * In-process tests of the pieces under DDP: bucket assignment (caps, first bucket, one dtype per
 * bucket), half conversions, and the hooks' arithmetic over a one-rank fake group that counts bytes.
 */

import assert from "node:assert/strict";
import { assignBuckets } from "../../ddp/buckets.ts";
import { compressWrapper, fromHalf, toHalf } from "../../ddp/hooks/compress.ts";
import { powerSGDHook, PowerSGDState } from "../../ddp/hooks/powersgd.ts";
import type { GradBucket, HookGroup } from "../../ddp/hooks/types.ts";
import type { Parameter } from "../../ddp/model.ts";

const param = (name: string, n: number, shape?: number[]): Parameter => ({
  name,
  data: new Float32Array(n),
  grad: new Float32Array(n),
  shape,
});

Deno.test("assignBuckets: first-bucket cap, later cap, oversized parameters alone, one dtype per bucket", () => {
  const ps = [param("a", 10), param("b", 10), param("c", 100), param("d", 10), param("e", 10)];
  const sizes = ps.map((p) => ({ dtype: "f32" as const, bytes: p.grad.byteLength }));
  // reverse order, first cap 80 bytes (20 floats), cap 200 bytes
  assert.deepEqual(assignBuckets(sizes, [4, 3, 2, 1, 0], 200, 80), [[4, 3], [2], [1, 0]]);
  const half = { dtype: "f16" as const, bytes: 8 };
  assert.deepEqual(assignBuckets([...sizes.slice(0, 2), half], [2, 1, 0], 1000, 1000), [[2], [1, 0]]);
});

Deno.test("toHalf/fromHalf: f16 and bf16 round trips of representable values, rounding otherwise", () => {
  const src = new Float32Array([0, 1, -2.5, 0.5, 65504, 1 / 3]);
  for (const format of ["f16", "bf16"] as const) {
    const h = new Uint16Array(src.length);
    toHalf(format, src, h);
    const back = new Float32Array(src.length);
    fromHalf(format, h, back);
    for (let i = 0; i < 4; i++) assert.equal(back[i], src[i]);
    assert.ok(Math.abs(back[5] - 1 / 3) < (format === "f16" ? 1e-3 : 3e-3));
  }
});

function fakeGroup(): HookGroup & { bytes: number } {
  return {
    rank: 0,
    size: 1,
    bytes: 0,
    allReduce(t) {
      this.bytes += t.byteLength;
      return Promise.resolve();
    },
  };
}

function bucketOf(params: Parameter[], group: HookGroup, iteration: number): GradBucket {
  const offsets: number[] = [];
  let n = 0;
  for (const p of params) offsets.push((n += p.grad.length) - p.grad.length);
  const buffer = new Float32Array(n);
  params.forEach((p, k) => buffer.set(p.grad, offsets[k]));
  return { index: 0, buffer, dtype: "f32", parameters: params, offsets, isLast: true, iteration, group };
}

Deno.test("powerSGDHook: a rank-1 matrix comes back exactly with r = 1; bytes r(n+m) plus the vectors", async () => {
  const w = param("w", 8 * 6, [8, 6]), b = param("b", 8, [8]);
  for (let i = 0; i < 8; i++) for (let j = 0; j < 6; j++) w.grad[i * 6 + j] = (i + 1) * (j - 2.5);
  b.grad.fill(0.25);
  const state = new PowerSGDState({ matrixApproximationRank: 1, startIter: 0, minCompressionRate: 1 });
  const g = fakeGroup();
  const out = await powerSGDHook(state, bucketOf([w, b], g, 0));
  for (let k = 0; k < 48; k++) assert.ok(Math.abs(out[k] - w.grad[k]) < 1e-4, `w[${k}]`);
  for (let k = 48; k < 56; k++) assert.equal(out[k], 0.25);
  assert.equal(g.bytes, 4 * (8 + 8 + 6));
  assert.ok(Math.max(...state.errors.get("w")!.map(Math.abs)) < 1e-4);
});

Deno.test("powerSGDHook: error feedback carries what a rank-1 approximation missed into the next step", async () => {
  const w = param("w", 4 * 4, [4, 4]);
  for (let k = 0; k < 16; k++) w.grad[k] = k % 5 === 0 ? 1 : 0; // identity: rank 4
  const state = new PowerSGDState({ matrixApproximationRank: 1, startIter: 0, minCompressionRate: 1 });
  let sent = new Float64Array(16);
  for (let s = 0; s < 40; s++) {
    const out = await powerSGDHook(state, bucketOf([w], fakeGroup(), s));
    sent = sent.map((x, k) => x + out[k]);
  }
  // Over many steps the sum of what was sent approaches the sum of the gradients (40 * identity).
  for (let k = 0; k < 16; k++) {
    assert.ok(Math.abs(sent[k] / 40 - w.grad[k]) < 0.1, `entry ${k}: ${sent[k] / 40}`);
  }
});

Deno.test("compressWrapper: the inner hook's allreduces travel as halves (half the bytes)", async () => {
  const w = param("w", 10);
  w.grad.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const g = fakeGroup();
  const hook = compressWrapper("bf16", async (_s: null, bucket: GradBucket) => {
    await bucket.group.allReduce(bucket.buffer, { op: "avg" });
    return bucket.buffer;
  });
  const out = await hook(null, bucketOf([w], g, 0));
  assert.deepEqual(Array.from(out), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(g.bytes, 20);
});
