/**
 * @module
 * Tests of DistributedSampler: the ranks' shares are disjoint and cover every index once per epoch,
 * padding and dropLast sizes, a different order per epoch, the same on every rank for a seed, and
 * resharding the rest of an epoch over a new membership without skipping or repeating a sample.
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

Deno.test("DistributedSampler.reshard: the rest of the epoch over a new membership, nothing skipped or repeated", () => {
  const len = 100, batch = 3;
  const whole = new DistributedSampler(len, { numReplicas: 1, rank: 0, seed: 5 });
  whole.setEpoch(2);
  const order = whole.indices();
  // 4 ranks take 2 steps of 3 each (24 positions), then 3 ranks go on from position 24.
  const used: number[] = [];
  for (let r = 0; r < 4; r++) {
    const s = new DistributedSampler(len, { numReplicas: 4, rank: r, seed: 5 });
    s.setEpoch(2);
    used.push(...s.indices().slice(0, 2 * batch));
  }
  const rest: number[][] = [];
  for (let r = 0; r < 3; r++) {
    const s = new DistributedSampler(len, { numReplicas: 4, rank: 0, seed: 5 });
    s.setEpoch(2);
    s.reshard(3, r, 24);
    assert.deepEqual([s.numReplicas, s.rank, s.consumed, s.length], [3, r, 24, 26]);
    rest.push(s.indices());
  }
  assert.deepEqual(new Set(used), new Set(order.slice(0, 24)));
  // Positions 24 + r, 24 + r + 3, ...: each step of `batch` per rank uses the next 9 positions.
  assert.deepEqual(rest.map((x) => x.slice(0, batch)).flat().sort(), order.slice(24, 33).sort());
  const all = rest.flat();
  assert.equal(all.length, 78); // 76 left, padded to 3 x 26 with the first two of them
  assert.deepEqual(new Set(all), new Set(order.slice(24)));
  assert.deepEqual(new Set([...used, ...all]), new Set(order)); // the whole epoch, padding aside
  // setEpoch starts the next epoch from its beginning, keeping the membership.
  const s = new DistributedSampler(len, { numReplicas: 4, rank: 1, seed: 5 });
  s.reshard(3, 2, 50);
  s.setEpoch(3);
  assert.deepEqual([s.numReplicas, s.rank, s.consumed, s.length], [3, 2, 0, 34]);
  assert.throws(() => s.reshard(3, 3, 0), InvalidArgumentError);
  assert.throws(() => s.reshard(3, 0, 101), InvalidArgumentError);
});
