/**
 * @module
 * The plan: a pure function (same input, same explanation, so every rank makes the same choice);
 * its choices reproduce what was measured on our machine; forcing and deterministic mode; and a
 * bad CHOIR_ALGO is refused before any rendezvous.
 */

import assert from "node:assert/strict";
import {
  type Algorithm,
  ALGORITHMS,
  initProcessGroup,
  isAlgorithm,
  plan,
  type PlanInput,
  type PlanOp,
} from "../../collectives/mod.ts";
import { InvalidArgumentError } from "../../errors.ts";
import { mediaOf } from "../../collectives/plan/plan.ts";
import { LINKS } from "../../collectives/plan/cost_model.ts";
import { rng } from "./reference.ts";

const KiB = 1 << 10;
const MiB = 1 << 20;
const OPS = Object.keys(ALGORITHMS) as PlanOp[];

function choose(op: PlanOp, bytes: number, n: number, transport = "tcp", more: Partial<PlanInput> = {}) {
  return plan({ op, bytes, n, transport, ...more }).algorithm;
}

function randomInputs(seed: number, count: number): PlanInput[] {
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  return Array.from({ length: count }, () => {
    const op = pick(OPS);
    const n = 1 + Math.floor(rand() * 16);
    const hosts = 1 + Math.floor(rand() * 3);
    return {
      op,
      bytes: Math.floor(2 ** (rand() * 27)),
      n,
      transport: pick(["tcp", "shm", "shm+tcp"]),
      hostOf: rand() < 0.5 ? undefined : Array.from({ length: n }, (_, r) => r % hosts),
      chunkBytes: pick([4 * KiB, 64 * KiB, MiB, undefined]),
      algorithm: rand() < 0.3 ? pick(ALGORITHMS[op]) : undefined,
      deterministic: rand() < 0.3,
    };
  });
}

function outcome(input: PlanInput): string {
  try {
    return JSON.stringify(plan(input));
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
}

Deno.test("plan is pure: the same input gives the same explanation, in any order, from copies", () => {
  const inputs = randomInputs(20261127, 2000);
  const first = inputs.map(outcome);
  // Again from deep copies and in reverse order: no state, clock or randomness may leak in.
  const again = inputs.map((i) => structuredClone(i)).reverse().map(outcome).reverse();
  assert.deepEqual(again, first);
});

Deno.test("plan's explanation is consistent: positive predictions, fastest first, the choice among them", () => {
  for (const input of randomInputs(7, 2000)) {
    let e;
    try {
      e = plan(input);
    } catch (err) {
      assert.ok(err instanceof InvalidArgumentError && input.algorithm !== undefined, String(err));
      continue;
    }
    assert.ok(e.candidates.length > 0);
    assert.ok(e.candidates.some((c) => c.algorithm === e.algorithm), `${e.algorithm} not a candidate`);
    for (let i = 1; i < e.candidates.length; i++) {
      assert.ok(e.candidates[i - 1].predictedUs <= e.candidates[i].predictedUs);
    }
    assert.ok(e.candidates.every((c) => Number.isFinite(c.predictedUs) && c.predictedUs >= 0));
    assert.ok(e.chunkBytes >= 0 && e.reason.length > 0);
    assert.equal(e.bytes, input.bytes);
  }
});

Deno.test("measured: 2 ranks over tcp, the direct exchange up to 1 MiB, the ring from 4 MiB", () => {
  for (const b of [8, KiB, 64 * KiB, 256 * KiB, 512 * KiB, MiB]) {
    assert.equal(choose("allReduce", b, 2), "direct", `${b} B`);
  }
  assert.ok(["direct", "ring"].includes(choose("allReduce", 2 * MiB, 2)));
  for (const b of [4 * MiB, 16 * MiB, 64 * MiB]) assert.equal(choose("allReduce", b, 2), "ring", `${b} B`);
});

Deno.test("measured: 4 ranks on 2 cores over tcp, recursive doubling for small, no ring to 1 MiB, ring from 4 MiB", () => {
  // Fewer elements than ranks: Rabenseifner (its sliceless ranks skip exchanges), as measured.
  assert.equal(choose("allReduce", 8, 4), "rabenseifner");
  for (const b of [KiB, 64 * KiB, 256 * KiB]) {
    assert.equal(choose("allReduce", b, 4), "recursive_doubling", `${b} B`);
  }
  for (const b of [512 * KiB, MiB]) assert.notEqual(choose("allReduce", b, 4), "ring", `${b} B`);
  assert.notEqual(choose("allReduce", 2 * MiB, 4), "recursive_doubling");
  for (const b of [4 * MiB, 64 * MiB]) assert.equal(choose("allReduce", b, 4), "ring", `${b} B`);
});

Deno.test("broadcast and reduce: the binomial tree for small messages, the chain for large ones", () => {
  for (const op of ["broadcast", "reduce"] as const) {
    for (const n of [2, 3, 4, 8]) {
      assert.equal(choose(op, 8, n), "binomial", `${op} ${n} ranks 8 B`);
      if (n > 2) assert.equal(choose(op, 64 * MiB, n), "chain", `${op} ${n} ranks 64 MiB`);
    }
  }
});

Deno.test("measured: a large reduce on 2 ranks runs as a chain (it overlaps receiving with reducing)", () => {
  assert.equal(choose("reduce", 64, 2), "binomial");
  for (const t of ["tcp", "shm"]) assert.equal(choose("reduce", 64 * MiB, 2, t), "chain");
});

Deno.test("across hosts of 2 ranks, large allreduces are hierarchical", () => {
  const hostOf = [0, 0, 1, 1];
  assert.equal(choose("allReduce", 64 * MiB, 4, "shm+tcp", { hostOf }), "hierarchical");
  assert.notEqual(choose("allReduce", 64 * MiB, 4, "shm+tcp", { hostOf: [0, 0, 0, 1] }), "hierarchical");
});

Deno.test("a lazy group's allreduce keeps to ring and tree neighbours: O(N) links in the job, unless forced or deterministic", () => {
  const many = ["recursive_doubling", "rabenseifner", "gather_fold", "ordered"];
  for (const n of [17, 64, 256, 1024, 4096]) {
    for (const hostOf of [undefined, Array.from({ length: n }, (_, r) => Math.floor(r / 8))]) {
      for (const bytes of [0, 8, 4 * KiB, MiB, 64 * MiB]) {
        const eager = plan({ op: "allReduce", bytes, n, transport: "tcp", hostOf });
        const lazy = plan({ op: "allReduce", bytes, n, transport: "tcp", hostOf, lazy: true });
        assert.ok(!many.includes(lazy.algorithm), `${n} ranks, ${bytes} B: ${lazy.algorithm}`);
        // The explanation still lists every candidate, and says what was passed over.
        assert.deepEqual(lazy.candidates, eager.candidates);
        if (many.includes(eager.algorithm)) assert.match(lazy.reason, /links open on first use/);
        else assert.equal(lazy.algorithm, eager.algorithm);
      }
    }
  }
  // Small allreduces in large lazy groups: the tree (recursive doubling would open 12 links a rank at 4,096).
  const hosts = { hostOf: Array.from({ length: 4096 }, (_, r) => Math.floor(r / 8)) };
  assert.equal(choose("allReduce", 32, 4096, "tcp", { ...hosts, lazy: true }), "tree");
  assert.equal(choose("allReduce", 32, 4096, "tcp", hosts), "recursive_doubling");
  // Forcing and deterministic mode still run what they ask for.
  assert.equal(
    choose("allReduce", 32, 64, "tcp", { lazy: true, algorithm: "recursive_doubling" }),
    "recursive_doubling",
  );
  assert.equal(choose("allReduce", 8, 64, "tcp", { lazy: true, deterministic: true }), "gather_fold");
});

Deno.test("forcing runs the forced algorithm; one that cannot run is an InvalidArgumentError naming op and algorithm", () => {
  for (const alg of ["ring", "tree", "rabenseifner", "recursive_doubling", "ordered"] as Algorithm[]) {
    const e = plan({ op: "allReduce", bytes: MiB, n: 5, transport: "tcp", algorithm: alg });
    assert.equal(e.algorithm, alg);
    assert.match(e.reason, /forced/);
  }
  const bad: [PlanOp, Algorithm, number][] = [
    ["allReduce", "direct", 4],
    ["allReduce", "chain", 4],
    ["allReduce", "hierarchical", 4],
    ["broadcast", "ring", 4],
    ["reduce", "rabenseifner", 3],
    ["reduceScatter", "tree", 3],
  ];
  for (const [op, alg, n] of bad) {
    assert.throws(
      () => plan({ op, bytes: 64, n, transport: "tcp", algorithm: alg }),
      (e: unknown) => e instanceof InvalidArgumentError && e.message.includes(op) && e.message.includes(alg),
      `${op} with ${alg}`,
    );
  }
  assert.ok(isAlgorithm("ring") && isAlgorithm("shm_chunks") && !isAlgorithm("bogus"));
});

Deno.test("deterministic: reductions over more than 2 ranks fold in rank order, whatever is forced", () => {
  const forced = { allReduce: "ring", reduce: "chain", reduceScatter: "ring" } as const;
  for (const op of ["allReduce", "reduce", "reduceScatter"] as const) {
    for (const algorithm of [undefined, forced[op]]) {
      const e = plan({ op, bytes: MiB, n: 4, transport: "tcp", deterministic: true, algorithm });
      assert.equal(e.algorithm, "ordered", `${op} forced ${algorithm}`);
      assert.match(e.reason, /rank order/);
    }
  }
  // Small allreduces gather every input and fold locally: recursive doubling's rounds, same bits.
  assert.equal(choose("allReduce", 8, 4, "tcp", { deterministic: true }), "gather_fold");
  // Two ranks: every algorithm computes x0 op x1, so the plan keeps its choice.
  assert.equal(choose("allReduce", 8, 2, "tcp", { deterministic: true }), "direct");
  assert.equal(choose("broadcast", 8, 4, "tcp", { deterministic: true }), "binomial");
});

Deno.test("an unknown CHOIR_ALGO is refused before any rendezvous", async () => {
  await assert.rejects(
    initProcessGroup({ env: { algorithm: "bogus" }, rank: 0, worldSize: 2, initMethod: "tcp://127.0.0.1:1" }),
    (e: unknown) => e instanceof InvalidArgumentError && /bogus/.test((e as Error).message),
  );
});

Deno.test("measured: ucx inside a host has its own constants (2-rank reduce of 1 MiB: ordered), tcp's across hosts", () => {
  assert.equal(mediaOf("ucx").local, LINKS.ucx);
  assert.equal(mediaOf("ucx").cross, LINKS.tcp);
  assert.equal(mediaOf("shm+ucx").local, LINKS.shm);
  // Measured (docs in cost_model.ts): ordered 347 us, binomial 661 us over ucx; tcp's constants chose binomial.
  assert.equal(plan({ op: "reduce", bytes: 1 << 20, n: 2, transport: "ucx" }).algorithm, "ordered");
  assert.equal(plan({ op: "allReduce", bytes: 1 << 20, n: 4, transport: "ucx" }).algorithm, "rabenseifner");
});
