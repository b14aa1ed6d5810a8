/**
 * @module
 * Bounded object collectives and their decoder: crafted payloads (cycles, RegExp, Error, too large, too
 * deep, a length bomb) are refused with PayloadRefusedError before anything big is allocated, ordinary
 * values of every supported type still round-trip, and between real ranks a refused object fails the
 * call on every rank with a typed error while the next calls work.
 */

import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { Packr } from "msgpackr/pack";
import { ChoirError } from "../../errors.ts";
import { packObject, unpackObject } from "../../collectives/objects.ts";
import { resultOf, runRanks } from "../helpers/ranks.ts";

/** unpackObject must refuse `bytes` with a PayloadRefusedError whose message matches `re`. */
function assertRefused(bytes: Uint8Array, re: RegExp, limits?: { maxBytes?: number }): void {
  assert.throws(() => unpackObject(bytes, 0, "test", 1, limits), (e: unknown) => {
    assert.ok(e instanceof ChoirError && e.name === "PayloadRefusedError", `got ${String(e)}`);
    assert.match((e as Error).message, re);
    assert.equal((e as ChoirError).peer, 1);
    return true;
  });
}

/** `depth` nested msgpack array32 headers that each claim 100000 elements: 5 bytes a level. */
function lengthBomb(depth: number): Uint8Array {
  const b = new Uint8Array(depth * 5);
  const v = new DataView(b.buffer);
  for (let i = 0; i < depth; i++) {
    b[i * 5] = 0xdd;
    v.setUint32(i * 5 + 1, 100_000);
  }
  return b;
}

Deno.test("decoder: cycles, RegExp and Error objects from a peer are refused", () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const shared = new Packr({ moreTypes: true, structuredClone: true });
  assertRefused(shared.pack(cyclic), /cycl|shared/i);
  const plain = new Packr({ moreTypes: true });
  assertRefused(plain.pack({ r: /a+b/g }), /RegExp/);
  assertRefused(plain.pack([new TypeError("boom")]), /Error/);
});

Deno.test("decoder: payloads too large or too deep are refused; a length bomb allocates nothing", () => {
  assertRefused(packObject("x".repeat(5000), 0, "test"), /large|5\d\d\d/, { maxBytes: 4096 });
  let v: unknown = 1;
  for (let i = 0; i < 150; i++) v = [v];
  assertRefused(new Packr({ moreTypes: true }).pack(v), /deep/);
  let o: unknown = { leaf: true };
  for (let i = 0; i < 150; i++) o = { o };
  assertRefused(new Packr({ moreTypes: true }).pack(o), /deep/);
  const before = Deno.memoryUsage().rss;
  const t0 = performance.now();
  assertRefused(lengthBomb(1000), /deep|length|malformed/i);
  assert.ok(performance.now() - t0 < 500, "refused at once");
  assert.ok(Deno.memoryUsage().rss - before < 50 << 20, "without allocating what the headers claim");
});

Deno.test("decoder: ordinary values of every supported type still round-trip", () => {
  const values: unknown[] = [
    null,
    undefined,
    true,
    0,
    -1,
    -33,
    127,
    128,
    65_536,
    2 ** 40,
    -(2 ** 40),
    1.5,
    NaN,
    10n ** 30n,
    -(10n ** 25n),
    2n ** 63n - 1n,
    "",
    "é".repeat(40),
    "s".repeat(300),
    "t".repeat(70_000),
    new Uint8Array([1, 2, 3]),
    new Float32Array([1.5, -2]),
    new Float64Array(3).fill(Math.PI),
    new BigInt64Array([1n, -2n]),
    new Int16Array([-5, 7]),
    new Uint16Array(0),
    new Map<unknown, unknown>([[1, "a"], ["k", { x: [1, 2] }]]),
    new Set([1, "two", 3]),
    new Date(1_700_000_000_123),
    new Date(0),
    Array.from({ length: 70_000 }, (_, i) => i % 7),
    Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`k${i}`, i])),
    // More than 64 object shapes in one message: msgpackr's record ids wrap around.
    Array.from({ length: 200 }, (_, i) => ({ [`f${i}`]: i, g: { [`h${i % 90}`]: [i] } })),
    { nested: { a: [{ b: new Map([[{ c: 1 }, new Set([new Float32Array(2)])]]) }] } },
  ];
  for (const value of values) {
    const back = unpackObject(packObject(value, 0, "test"), 0, "test", 1);
    assert.ok(isDeepStrictEqual(back, value), `round trip of ${String(value).slice(0, 60)}`);
  }
  // Nesting up to the limit is fine.
  let v: unknown = 1;
  for (let i = 0; i < 99; i++) v = [v];
  assert.ok(isDeepStrictEqual(unpackObject(packObject(v, 0, "test"), 0, "test", 1), v));
});

interface WorkerResult {
  rank: number;
  checks: number;
  failures: string[];
}

for (const transport of ["tcp", "shm"]) {
  Deno.test(`object collectives over ${transport}: refused objects fail every rank with a typed error; the group goes on`, async () => {
    const outs = await runRanks({
      script: "tests/fixtures/object_bounds_worker.ts",
      worldSize: 3,
      env: { CHOIR_TRANSPORT: transport },
      deadlineMs: 90_000,
    });
    for (const out of outs) {
      assert.equal(out.code, 0, `rank ${out.rank} exited ${out.code}\n${out.stderr}`);
      const res = resultOf<WorkerResult>(out);
      assert.deepEqual(res.failures, [], `rank ${out.rank} failures`);
      assert.ok(res.checks >= 9, `rank ${out.rank} ran only ${res.checks} checks`);
    }
  });
}

Deno.test("decoder: random values round-trip; randomly damaged bytes give typed errors only", () => {
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const int = (n: number) => Math.floor(rnd() * n);
  const gen = (depth: number): unknown => {
    switch (int(depth > 4 ? 8 : 13)) {
      case 0:
        return int(3) === 0 ? null : int(2) === 0;
      case 1:
        return int(2 ** 31) - 2 ** 30;
      case 2:
        return rnd() * 1e9;
      case 3:
        return "abcé€".repeat(int(60));
      case 4:
        return BigInt(int(2 ** 30)) ** BigInt(1 + int(4));
      case 5:
        return new Float64Array(int(20)).map(() => rnd());
      case 6:
        return new Date(int(2 ** 40));
      case 7:
        return undefined;
      case 8:
        return Array.from({ length: int(6) }, () => gen(depth + 1));
      case 9:
        return Object.fromEntries(Array.from({ length: int(6) }, () => [`k${int(90)}`, gen(depth + 1)]));
      case 10:
        return new Map(Array.from({ length: int(4) }, () => [gen(depth + 1), gen(depth + 1)]));
      case 11:
        return new Set(Array.from({ length: int(4) }, () => int(100)));
      default:
        return new Uint8Array(int(300)).map(() => int(256));
    }
  };
  let damagedDecoded = 0;
  for (let i = 0; i < 400; i++) {
    const value = gen(0);
    const bytes = packObject(value, 0, "test");
    assert.ok(isDeepStrictEqual(unpackObject(bytes, 0, "test", 1), value), `round trip ${i}`);
    for (let m = 0; m < 10; m++) {
      const bad = bytes.slice(0, bytes.length - (m === 0 ? 1 : 0));
      if (m > 0) bad[int(bad.length)] = int(256);
      try {
        unpackObject(bad, 0, "test", 1);
        damagedDecoded++;
      } catch (e) {
        assert.ok(e instanceof ChoirError, `damaged copy ${i}/${m}: ${String(e)}`);
      }
    }
  }
  // Most single-byte changes still decode (a changed digit); the check is that none threw untyped.
  assert.ok(damagedDecoded > 0);
});
