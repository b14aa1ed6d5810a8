/**
 * @module
 * Tests of DistributedSampler: the ranks' shares are disjoint and cover every index once per epoch,
 * padding and dropLast sizes, a different order per epoch, the same on every rank for a seed.
 */

import assert from "node:assert/strict";
import { DistributedSampler } from "../../ddp/mod.ts";
import { InvalidArgumentError } from "../../errors.ts";

const shares = (
  len: number,
  n: number,
  opts: { seed?: number; dropLast?: boolean; shuffle?: boolean },
  epoch = 0,
) =>
  Array.from({ length: n }, (_, rank) => {
    const s = new DistributedSampler(len, { numReplicas: n, rank, ...opts });
    s.setEpoch(epoch);
    return [...s];
  });

Deno.test("DistributedSampler: every index exactly once per epoch across ranks (even split)", () => {
  for (const n of [1, 2, 3, 4]) {
    for (const epoch of [0, 1, 5]) {
      const all = shares(24, n, { seed: 9 }, epoch).flat().sort((a, b) => a - b);
      assert.deepEqual(all, Array.from({ length: 24 }, (_, i) => i));
    }
  }
});

Deno.test("DistributedSampler: padding wraps around, dropLast drops the tail", () => {
  const padded = shares(10, 4, { seed: 1 });
  assert.deepEqual(padded.map((s) => s.length), [3, 3, 3, 3]);
  const flat = padded.flat();
  assert.equal(new Set(flat).size, 10); // every index at least once, two repeated
  assert.equal(new DistributedSampler(10, { numReplicas: 4, rank: 0 }).length, 3);
  const dropped = shares(10, 4, { seed: 1, dropLast: true });
  assert.deepEqual(dropped.map((s) => s.length), [2, 2, 2, 2]);
  assert.equal(new Set(dropped.flat()).size, 8); // disjoint
  assert.deepEqual(shares(5, 2, { shuffle: false }), [[0, 2, 4], [1, 3, 0]]);
});

Deno.test("DistributedSampler: order changes with the epoch and the seed, same for the same seed and epoch", () => {
  const a = shares(50, 2, { seed: 4 }, 0),
    b = shares(50, 2, { seed: 4 }, 1),
    c = shares(50, 2, { seed: 4 }, 0);
  assert.notDeepEqual(a, b);
  assert.deepEqual(a, c);
  assert.notDeepEqual(a, shares(50, 2, { seed: 5 }, 0));
  assert.notDeepEqual(a[0], [...a[0]].sort((x, y) => x - y)); // actually shuffled
});

Deno.test("DistributedSampler: invalid arguments throw InvalidArgumentError", () => {
  assert.throws(() => new DistributedSampler(10, { numReplicas: 2, rank: 2 }), InvalidArgumentError);
  assert.throws(() => new DistributedSampler(-1, { numReplicas: 2, rank: 0 }), InvalidArgumentError);
  assert.throws(() => new DistributedSampler(10, { numReplicas: 0, rank: 0 }), InvalidArgumentError);
});
