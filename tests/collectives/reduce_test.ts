/**
 * @module
 * Tests of the reduce kernels: every dtype x op on every path (JS, OpenBLAS, staged wasm, in-memory
 * wasm) against plain references written here with Number/BigInt math, Math.fround and Math.f16round.
 */

import assert from "node:assert/strict";
import { InvalidArgumentError } from "../../errors.ts";
import { type CpuTensor, type DType, DTYPES, opSupports, REDUCE_OPS, type ReduceOp } from "../../dtype.ts";
import {
  blasAvailable,
  divideInto,
  reduceInto,
  reducePath,
  scaleInto,
  setBlasEnabled,
  WasmReducer,
} from "../../collectives/kernels/mod.ts";

// ---- deterministic random numbers ---------------------------------------------------------------

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

// ---- reference arithmetic -----------------------------------------------------------------------

const INT_BITS: Partial<Record<DType, [number, boolean]>> = {
  i32: [32, true],
  u32: [32, false],
  i64: [64, true],
  u8: [8, false],
  i8: [8, true],
};

function isFloat(d: DType): boolean {
  return INT_BITS[d] === undefined;
}

/** Round x (a finite or not number) to a binary format with p significand bits, nearest even. */
function roundToFormat(x: number, p: number, emin: number, emax: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const ax = Math.abs(x);
  let e = Math.floor(Math.log2(ax));
  if (2 ** e > ax) e--;
  if (2 ** (e + 1) <= ax) e++;
  const q = 2 ** (Math.max(e, emin) - (p - 1));
  const r = ax / q;
  let m = Math.floor(r);
  const frac = r - m;
  if (frac > 0.5 || (frac === 0.5 && m % 2 === 1)) m++;
  const v = m * q;
  if (v > (2 - 2 ** (1 - p)) * 2 ** emax) return x < 0 ? -Infinity : Infinity;
  return x < 0 ? -v : v;
}

const toBf16Value = (x: number) => roundToFormat(Math.fround(x), 8, -126, 127);
const toF16Value = (x: number) => Math.f16round(Math.fround(x));

/** Decoded element values of a float array (a typed array itself where no decoding is needed). */
function decode(dtype: DType, t: CpuTensor): ArrayLike<number> {
  if (dtype === "f16") {
    const u = t as Uint16Array;
    return new Float16Array(u.buffer, u.byteOffset, u.length);
  }
  if (dtype === "bf16") {
    const h = t as Uint16Array, u32 = new Uint32Array(h.length);
    for (let i = 0; i < h.length; i++) u32[i] = h[i] << 16;
    return new Float32Array(u32.buffer);
  }
  return t as Float32Array;
}

function fmin(a: number, b: number): number {
  if (a !== a || b !== b) return NaN;
  if (a === 0 && b === 0) return Object.is(a, -0) || Object.is(b, -0) ? -0 : 0;
  return a < b ? a : b;
}

function fmax(a: number, b: number): number {
  if (a !== a || b !== b) return NaN;
  if (a === 0 && b === 0) return Object.is(a, 0) || Object.is(b, 0) ? 0 : -0;
  return a > b ? a : b;
}

function baseOp(op: ReduceOp): ReduceOp {
  return op === "avg" || op === "premul_sum" ? "sum" : op;
}

function refFloat(dtype: DType, op: ReduceOp, a: number, b: number): number {
  let r: number;
  switch (baseOp(op)) {
    case "sum":
      r = a + b;
      break;
    case "product":
      r = a * b;
      break;
    case "min":
      r = fmin(a, b);
      break;
    case "max":
      r = fmax(a, b);
      break;
    default:
      throw new Error(`no float ref for ${op}`);
  }
  if (dtype === "f64") return r;
  if (dtype === "f32") return Math.fround(r);
  return dtype === "f16" ? toF16Value(r) : toBf16Value(r);
}

function refInt(dtype: DType, op: ReduceOp, a: bigint, b: bigint): bigint {
  const [bits, signed] = INT_BITS[dtype]!;
  const wrap = (v: bigint) => signed ? BigInt.asIntN(bits, v) : BigInt.asUintN(bits, v);
  switch (baseOp(op)) {
    case "sum":
      return wrap(a + b);
    case "product":
      return wrap(a * b);
    case "min":
      return a < b ? a : b;
    case "max":
      return a > b ? a : b;
    case "band":
      return wrap(a & b);
    case "bor":
      return wrap(a | b);
    case "bxor":
      return wrap(a ^ b);
    default:
      throw new Error(`no int ref for ${op}`);
  }
}

// ---- random arrays ------------------------------------------------------------------------------

function alloc(dtype: DType, n: number): CpuTensor {
  switch (dtype) {
    case "f32":
      return new Float32Array(n);
    case "f64":
      return new Float64Array(n);
    case "i32":
      return new Int32Array(n);
    case "u32":
      return new Uint32Array(n);
    case "i64":
      return new BigInt64Array(n);
    case "u8":
      return new Uint8Array(n);
    case "i8":
      return new Int8Array(n);
    case "f16":
    case "bf16":
      return new Uint16Array(n);
  }
}

/** Random contents: integers over their full range; floats mostly ordinary values, some raw bits. */
function randomArray(dtype: DType, n: number, rand: () => number): CpuTensor {
  const t = alloc(dtype, n);
  const words = new Uint32Array(t.buffer, 0, t.byteLength >>> 2), bytes = new Uint8Array(t.buffer);
  for (let i = 0; i < words.length; i++) words[i] = rand() * 2 ** 32;
  for (let i = words.byteLength; i < bytes.length; i++) bytes[i] = rand() * 256;
  if (!isFloat(dtype)) return t;
  const nice = () => (rand() < 0.5 ? -1 : 1) * rand() * 2 ** Math.floor(rand() * 20 - 10);
  if (dtype === "f32" || dtype === "f64") {
    const f = t as Float32Array | Float64Array;
    for (let i = 0; i < n; i++) if (rand() < 0.85) f[i] = nice();
  } else {
    const h = t as Uint16Array;
    const f16 = new Float16Array(1), f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
    for (let i = 0; i < n; i++) {
      if (rand() >= 0.85) continue;
      if (dtype === "f16") {
        f16[0] = nice();
        h[i] = new Uint16Array(f16.buffer)[0];
      } else {
        f32[0] = nice();
        h[i] = u32[0] >>> 16;
      }
    }
  }
  return t;
}

function copyOf(t: CpuTensor): CpuTensor {
  return t.slice() as CpuTensor;
}

// ---- comparison ---------------------------------------------------------------------------------

/** Asserts that `got` equals the element-wise reference over inputs a, b (first mismatch reported). */
function expectReduced(
  dtype: DType,
  op: ReduceOp,
  got: CpuTensor,
  a: CpuTensor,
  b: CpuTensor,
  what: string,
): void {
  assert.equal(got.length, a.length);
  if (isFloat(dtype)) {
    const g = decode(dtype, got), x = decode(dtype, a), y = decode(dtype, b);
    for (let i = 0; i < g.length; i++) {
      const want = refFloat(dtype, op, x[i], y[i]);
      if (!Object.is(g[i], want)) {
        assert.fail(
          `${what}: ${dtype} ${op} [${i}] of ${g.length}: op(${x[i]}, ${y[i]}) = ${g[i]}, want ${want}`,
        );
      }
    }
  } else {
    const g = got as Int32Array, x = a as Int32Array, y = b as Int32Array;
    for (let i = 0; i < g.length; i++) {
      const want = refInt(dtype, op, BigInt(x[i]), BigInt(y[i]));
      if (BigInt(g[i]) !== want) {
        assert.fail(
          `${what}: ${dtype} ${op} [${i}] of ${g.length}: op(${x[i]}, ${y[i]}) = ${g[i]}, want ${want}`,
        );
      }
    }
  }
}

function checkReduce(dtype: DType, op: ReduceOp, n: number, seed: number, what: string): void {
  const rand = rng(seed);
  const a = randomArray(dtype, n, rand), b = randomArray(dtype, n, rand);
  const dst = copyOf(a);
  reduceInto(dtype, op, dst, b);
  expectReduced(dtype, op, dst, a, b, what);
}

const LENGTHS = [0, 1, 3, 7, 15, 17, 63, 64, 255, 256, 1000, 65537];
const PAIRS = DTYPES.flatMap((d) =>
  REDUCE_OPS.filter((op) => opSupports(op, d)).map((op) => [d, op] as const)
);

// ---- reduceInto: every dtype x op ---------------------------------------------------------------

for (const dtype of DTYPES) {
  Deno.test(`reduceInto ${dtype}: every op, lengths 0..65537, random data`, () => {
    for (const op of REDUCE_OPS) {
      if (!opSupports(op, dtype)) continue;
      for (const n of LENGTHS) checkReduce(dtype, op, n, n * 31 + op.length, `n=${n}`);
    }
  });
}

Deno.test("reduceInto with OpenBLAS disabled (forced WASM/JS fallback)", () => {
  setBlasEnabled(false);
  try {
    assert.equal(blasAvailable(), false);
    for (const dtype of ["f32", "f64"] as const) {
      for (const op of ["sum", "avg", "premul_sum"] as const) {
        assert.equal(reducePath(dtype, op, 1000), dtype === "f32" ? "wasm" : "js");
        for (const n of LENGTHS) checkReduce(dtype, op, n, n + 7, `no-blas n=${n}`);
      }
    }
  } finally {
    setBlasEnabled(true);
  }
});

const noBlas = !blasAvailable();
if (noBlas) {
  console.log(
    "reduce_test.ts: skipped: libopenblas.so.0 could not be opened (Debian: libopenblas0) or --allow-ffi is not given; the OpenBLAS SUM test is ignored",
  );
}

Deno.test({
  name: "reduceInto f32/f64 SUM takes OpenBLAS when installed",
  ignore: noBlas,
  fn() {
    for (const dtype of ["f32", "f64"] as const) {
      assert.equal(reducePath(dtype, "sum", 1000), "blas");
      assert.equal(reducePath(dtype, "sum", 10), "js");
      for (const n of LENGTHS) checkReduce(dtype, "sum", n, n + 11, `blas n=${n}`);
    }
  },
});

Deno.test("without --allow-ffi OpenBLAS is silently unavailable and SUM still works", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/no_ffi.ts`;
    const mod = new URL("../../collectives/kernels/mod.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { blasAvailable, reduceInto, reducePath } from ${JSON.stringify(mod)};
const d = new Float32Array(1000).fill(1), s = new Float32Array(1000).fill(2);
reduceInto("f32", "sum", d, s);
console.log(JSON.stringify({ blas: blasAvailable(), path: reducePath("f32", "sum", 1000), ok: d.every((v) => v === 3) }));
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-config", script],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(text), { blas: false, path: "wasm", ok: true });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reducePath: tiny arrays stay in JS, large ones go to kernels", () => {
  for (const [dtype, op] of PAIRS) assert.equal(reducePath(dtype, op, 8), "js");
  assert.equal(reducePath("i32", "max", 100_000), "wasm");
  assert.equal(reducePath("bf16", "sum", 100_000), "wasm");
  assert.equal(reducePath("u8", "product", 100_000), "js"); // no SIMD byte multiply
  assert.equal(reducePath("i64", "sum", 100_000), "js"); // V8's BigInt64Array loop measured faster
  assert.equal(reducePath("f64", "max", 100_000), "js");
});

Deno.test("reduceInto large arrays (3M+3 elements)", () => {
  const n = 3_000_003;
  for (const [dtype, op] of [["f32", "sum"], ["f32", "max"], ["i32", "sum"]] as const) {
    checkReduce(dtype, op, n, 99, "large");
  }
  checkReduce("i64", "sum", 300_003, 97, "large");
  checkReduce("bf16", "sum", 300_003, 96, "large");
  setBlasEnabled(false);
  try {
    checkReduce("f64", "sum", n, 98, "large no-blas");
  } finally {
    setBlasEnabled(true);
  }
});

Deno.test("reduceInto with dst and src the same array", () => {
  for (const n of [5, 1000]) {
    const a = randomArray("f32", n, rng(n));
    const d = copyOf(a);
    reduceInto("f32", "sum", d, d);
    expectReduced("f32", "sum", d, a, a, "aliased");
  }
});

Deno.test("reduceInto on views with a byte offset", () => {
  const buf = new Float32Array(2100);
  const rand = rng(5);
  for (let i = 0; i < buf.length; i++) buf[i] = rand();
  const a = buf.subarray(3, 1003), b = buf.subarray(1005, 2005);
  const before = buf.slice();
  const a0 = a.slice();
  reduceInto("f32", "max", a, b);
  expectReduced("f32", "max", a, a0, b, "views");
  assert.deepEqual(buf.subarray(0, 3), before.subarray(0, 3));
  assert.deepEqual(buf.subarray(1003), before.subarray(1003));
});

// ---- special values -----------------------------------------------------------------------------

const SPECIAL = [NaN, Infinity, -Infinity, 0, -0, 1, -1, 1.5, 65504, 2 ** -24, 2 ** -20, 3e38, 1e-40];

function specialArrays(dtype: "f32" | "f64" | "f16" | "bf16", reps: number): [CpuTensor, CpuTensor] {
  const xs: number[] = [], ys: number[] = [];
  for (let r = 0; r < reps; r++) {
    for (const x of SPECIAL) for (const y of SPECIAL) xs.push(x), ys.push(y);
  }
  const enc = (v: number[]): CpuTensor => {
    if (dtype === "f32") return new Float32Array(v);
    if (dtype === "f64") return new Float64Array(v);
    if (dtype === "f16") return new Uint16Array(new Float16Array(v).buffer);
    const u = new Uint32Array(new Float32Array(v).buffer);
    return new Uint16Array(Array.from(u, (b) => b >>> 16));
  };
  return [enc(xs), enc(ys)];
}

Deno.test("NaN, infinities, signed zeros and subnormals on every float path", () => {
  for (const dtype of ["f32", "f64", "f16", "bf16"] as const) {
    for (const op of ["sum", "product", "min", "max"] as const) {
      for (const reps of [1, 3]) { // 169 pairs (JS / BLAS / wasm) and 507 (longer vector runs)
        for (const blas of [true, false]) {
          setBlasEnabled(blas);
          const [a, b] = specialArrays(dtype, reps);
          const d = copyOf(a);
          reduceInto(dtype, op, d, b);
          expectReduced(dtype, op, d, a, b, `special blas=${blas}`);
          const small = a.slice(0, 13) as CpuTensor, d2 = copyOf(small);
          reduceInto(dtype, op, d2, b.slice(0, 13) as CpuTensor);
          expectReduced(dtype, op, d2, small, b.slice(0, 13) as CpuTensor, "special small");
        }
      }
    }
  }
  setBlasEnabled(true);
});

Deno.test("min/max of -0 and +0 agree between the JS and wasm paths", () => {
  for (const dtype of ["f32", "f64", "bf16", "f16"] as const) {
    for (const n of [4, 1000]) {
      const zeros = (s: number) => {
        const t = alloc(dtype, n);
        if (dtype === "f32" || dtype === "f64") (t as Float32Array).fill(s);
        else (t as Uint16Array).fill(Object.is(s, -0) ? 0x8000 : 0);
        return t;
      };
      const neg = zeros(-0), pos = zeros(0);
      const mn = copyOf(neg), mx = copyOf(neg);
      reduceInto(dtype, "min", mn, pos);
      reduceInto(dtype, "max", mx, pos);
      assert.ok(Array.from(decode(dtype, mn)).every((v) => Object.is(v, -0)), `${dtype} min(-0,+0) n=${n}`);
      assert.ok(Array.from(decode(dtype, mx)).every((v) => Object.is(v, 0)), `${dtype} max(-0,+0) n=${n}`);
    }
  }
});

Deno.test("f16 and bf16: every bit pattern survives x + 0 and x * 1 (JS and wasm paths)", () => {
  for (const dtype of ["f16", "bf16"] as const) {
    const all = new Uint16Array(65536).map((_, i) => i);
    const one = dtype === "f16" ? 0x3c00 : 0x3f80;
    for (const [op, neutral] of [["sum", 0x8000], ["product", one]] as const) {
      // -0 is the additive identity that keeps -0 as well
      for (const chunk of [65536, 50]) {
        const d = all.slice();
        for (let off = 0; off < d.length; off += chunk) {
          const part = d.subarray(off, off + chunk);
          reduceInto(dtype, op, part, new Uint16Array(part.length).fill(neutral));
        }
        const got = decode(dtype, d), want = decode(dtype, all);
        for (let i = 0; i < 65536; i++) {
          if (!Object.is(got[i], want[i])) {
            assert.fail(`${dtype} ${op} chunk ${chunk}: 0x${i.toString(16)} -> ${got[i]}`);
          }
        }
      }
    }
  }
});

Deno.test("the test's own rounding agrees with Math.f16round (sanity of the bf16 reference)", () => {
  const rand = rng(3);
  for (let i = 0; i < 20000; i++) {
    const x = (rand() - 0.5) * 2 ** (rand() * 60 - 30);
    assert.ok(Object.is(roundToFormat(x, 11, -14, 15), Math.f16round(x)), `${x}`);
  }
  for (const x of [65519.99, 65520, 65536, 2 ** -25, 2 ** -25 * 1.0001, 3 * 2 ** -26]) {
    assert.ok(Object.is(roundToFormat(x, 11, -14, 15), Math.f16round(x)), `${x}`);
  }
});

// ---- integers -----------------------------------------------------------------------------------

Deno.test("integer SUM and PRODUCT wrap around (two's complement)", () => {
  const cases: Array<[DType, CpuTensor, CpuTensor]> = [
    ["i32", new Int32Array([2 ** 31 - 1, -(2 ** 31), 65536, -1]), new Int32Array([1, -1, 65536, -1])],
    ["u32", new Uint32Array([2 ** 32 - 1, 2 ** 31, 65536, 3]), new Uint32Array([1, 2 ** 31, 65536, 5])],
    ["u8", new Uint8Array([255, 128, 16, 0]), new Uint8Array([1, 128, 16, 255])],
    ["i8", new Int8Array([127, -128, 16, -1]), new Int8Array([1, -1, 16, -128])],
    [
      "i64",
      new BigInt64Array([2n ** 63n - 1n, -(2n ** 63n), 2n ** 32n, -1n]),
      new BigInt64Array([1n, -1n, 2n ** 32n, -1n]),
    ],
  ];
  for (const [dtype, a, b] of cases) {
    for (const reps of [1, 300]) { // JS path, then the staged wasm path
      const tile = (t: CpuTensor): CpuTensor => {
        const out = alloc(dtype, t.length * reps) as Int32Array;
        for (let r = 0; r < reps; r++) out.set(t as Int32Array, r * t.length);
        return out;
      };
      for (const op of ["sum", "product"] as const) {
        const x = tile(a), y = tile(b), d = copyOf(x);
        reduceInto(dtype, op, d, y);
        expectReduced(dtype, op, d, x, y, `wrap reps=${reps}`);
      }
    }
  }
  const d = new Int32Array([2 ** 31 - 1]);
  reduceInto("i32", "sum", d, new Int32Array([1]));
  assert.equal(d[0], -(2 ** 31));
});

// ---- AVG, PREMUL_SUM, scale and divide ----------------------------------------------------------

function refDivide(dtype: DType, x: number | bigint, n: number): number | bigint {
  if (dtype === "i64") return (x as bigint) / BigInt(n);
  if (!isFloat(dtype)) return Math.trunc(Number(x) / n) + 0; // + 0: no -0 for integers
  if (dtype === "f64") return (x as number) / n;
  const q = Math.fround((x as number) / Math.fround(n));
  return dtype === "f32" ? q : dtype === "f16" ? toF16Value(q) : toBf16Value(q);
}

function refScale(dtype: DType, x: number, f: number): number {
  if (dtype === "f64") return x * f;
  const p = Math.fround(x * Math.fround(f));
  return dtype === "f32" ? p : dtype === "f16" ? toF16Value(p) : toBf16Value(p);
}

function values(dtype: DType, t: CpuTensor): ArrayLike<number | bigint> {
  return isFloat(dtype) ? decode(dtype, t) : t as Int32Array | BigInt64Array;
}

Deno.test("divideInto: floats divide, integers truncate toward zero", () => {
  const i32 = new Int32Array([-7, 7, -1, 5, -(2 ** 31), 2 ** 31 - 1]);
  divideInto("i32", i32, 2);
  assert.deepEqual(Array.from(i32), [-3, 3, 0, 2, -(2 ** 30), 2 ** 30 - 1]);
  const i64 = new BigInt64Array([-7n, 7n, -(2n ** 63n), 2n ** 63n - 1n]);
  divideInto("i64", i64, 3);
  assert.deepEqual(Array.from(i64), [-2n, 2n, -(2n ** 63n) / 3n, (2n ** 63n - 1n) / 3n]);
  for (const dtype of DTYPES) {
    for (const n of [1, 5, 100, 1000, 70000]) {
      for (const div of [1, 2, 3, 4, 7, 8]) {
        for (const blas of [true, false]) {
          setBlasEnabled(blas);
          const a = randomArray(dtype, n, rng(n + div)), d = copyOf(a);
          divideInto(dtype, d, div);
          const got = values(dtype, d), src = values(dtype, a);
          for (let i = 0; i < n; i++) {
            const want = refDivide(dtype, src[i], div);
            if (!Object.is(got[i], want)) {
              assert.fail(`${dtype} n=${n} [${i}] ${src[i]} / ${div} = ${got[i]}, want ${want}`);
            }
          }
        }
      }
    }
  }
  setBlasEnabled(true);
});

Deno.test("scaleInto: floats, factor rounded to f32 for f32/f16/bf16", () => {
  for (const dtype of ["f32", "f64", "f16", "bf16"] as const) {
    for (const n of [3, 100, 1000, 70000]) {
      for (const f of [0.5, 1 / 3, -2.5, 0, 1e-3, Infinity]) {
        for (const blas of [true, false]) {
          setBlasEnabled(blas);
          const a = randomArray(dtype, n, rng(n)), d = copyOf(a);
          scaleInto(dtype, d, f);
          const got = decode(dtype, d), src = decode(dtype, a);
          for (let i = 0; i < n; i++) {
            const want = refScale(dtype, src[i], f);
            if (!Object.is(got[i], want)) {
              assert.fail(`${dtype} n=${n} [${i}] ${src[i]} * ${f} = ${got[i]}, want ${want}`);
            }
          }
        }
      }
    }
  }
  setBlasEnabled(true);
});

Deno.test("AVG: reduce as SUM, then divide by the number of inputs", () => {
  for (const dtype of ["f32", "i32", "i64", "bf16"] as const) {
    for (const n of [5, 5000]) {
      const rand = rng(n);
      const inputs = [0, 1, 2].map(() => randomArray(dtype, n, rand));
      const acc = copyOf(inputs[0]);
      reduceInto(dtype, "avg", acc, inputs[1]);
      reduceInto(dtype, "avg", acc, inputs[2]);
      divideInto(dtype, acc, 3);
      const want = copyOf(inputs[0]);
      reduceInto(dtype, "sum", want, inputs[1]);
      reduceInto(dtype, "sum", want, inputs[2]);
      const ws = values(dtype, want), got = values(dtype, acc);
      for (let i = 0; i < n; i++) assert.ok(Object.is(got[i], refDivide(dtype, ws[i], 3)), `${dtype} [${i}]`);
    }
  }
});

Deno.test("PREMUL_SUM: scale each input, then sum", () => {
  for (const dtype of ["f32", "f64", "f16", "bf16"] as const) {
    for (const n of [7, 4000]) {
      const rand = rng(n);
      const a = randomArray(dtype, n, rand), b = randomArray(dtype, n, rand);
      const sa = copyOf(a), sb = copyOf(b);
      scaleInto(dtype, sa, 0.25);
      scaleInto(dtype, sb, 0.25);
      const d = copyOf(sa);
      reduceInto(dtype, "premul_sum", d, sb);
      const x = decode(dtype, a), y = decode(dtype, b), got = decode(dtype, d);
      for (let i = 0; i < n; i++) {
        const want = refFloat(dtype, "sum", refScale(dtype, x[i], 0.25), refScale(dtype, y[i], 0.25));
        assert.ok(Object.is(got[i], want), `${dtype} [${i}] ${got[i]} want ${want}`);
      }
    }
  }
});

// ---- WasmReducer on offsets inside a memory -----------------------------------------------------

function writeAt(mem: WebAssembly.Memory, byteOffset: number, t: CpuTensor): void {
  new Uint8Array(mem.buffer, byteOffset, t.byteLength).set(
    new Uint8Array(t.buffer, t.byteOffset, t.byteLength),
  );
}

function readAt(mem: WebAssembly.Memory, byteOffset: number, like: CpuTensor): CpuTensor {
  const out = copyOf(like);
  new Uint8Array(out.buffer).set(new Uint8Array(mem.buffer, byteOffset, like.byteLength));
  return out;
}

for (const shared of [false, true]) {
  Deno.test(`WasmReducer (${shared ? "shared" : "non-shared"} memory): every supported pair at offsets`, () => {
    const mem = shared
      ? new WebAssembly.Memory({ initial: 4, maximum: 64, shared: true })
      : new WebAssembly.Memory({ initial: 4 });
    const r = new WasmReducer(mem);
    assert.equal(r.memory, mem);
    const pairs = WasmReducer.supportedPairs();
    assert.ok(pairs.length >= 50, `only ${pairs.length} pairs`);
    for (const { dtype, op } of pairs) {
      assert.ok(WasmReducer.supports(dtype, op));
      for (const n of [0, 1, 3, 17, 33, 1000]) {
        for (const [dOff, sOff] of [[64, 65536], [8, 100_008], [1, 130_003]]) { // the last pair is misaligned
          const rand = rng(n + dOff);
          const a = randomArray(dtype, n, rand), b = randomArray(dtype, n, rand);
          writeAt(mem, dOff, a);
          writeAt(mem, sOff, b);
          r.reduce(dtype, op, dOff, sOff, n);
          expectReduced(dtype, op, readAt(mem, dOff, a), a, b, `wasm@${dOff}`);
          assert.deepEqual(readAt(mem, sOff, b), b, "src untouched");
        }
      }
    }
  });
}

Deno.test("WasmReducer: the pairs it lacks, scale/divide kernels, bounds checks", () => {
  assert.equal(WasmReducer.supports("u8", "product"), false);
  assert.equal(WasmReducer.supports("i8", "product"), false);
  assert.equal(WasmReducer.supports("f32", "band"), false);
  for (const d of ["f32", "f64", "i32", "u32", "i64", "bf16", "f16"] as const) {
    for (const op of ["sum", "min", "max", "avg"] as const) {
      assert.ok(WasmReducer.supports(d, op), `${d} ${op}`);
    }
  }
  const r = WasmReducer.create({ initialPages: 1 });
  assert.equal(r.memory.buffer.byteLength, 65536);
  const f = new Float32Array(r.memory.buffer, 16, 37);
  f.set(Array.from({ length: 37 }, (_, i) => i - 18.5));
  const want = Array.from(f, (v) => Math.fround(Math.fround(v * Math.fround(0.1)) / 3));
  r.scale("f32", 16, 37, 0.1);
  r.divide("f32", 16, 37, 3);
  assert.deepEqual(Array.from(f), want);
  const i = new Int32Array(r.memory.buffer, 1024, 3);
  i.set([-7, 7, 9]);
  r.divide("i32", 1024, 3, 2);
  assert.deepEqual(Array.from(i), [-3, 3, 4]);
  assert.throws(() => r.reduce("f32", "sum", 65536 - 8, 0, 3), InvalidArgumentError);
  assert.throws(() => r.reduce("f32", "sum", -4, 0, 1), InvalidArgumentError);
  assert.throws(() => r.reduce("f32", "sum", 0.5, 0, 1), InvalidArgumentError);
  assert.throws(() => r.reduce("f32", "band", 0, 0, 1), InvalidArgumentError);
  assert.throws(() => r.reduce("u8", "product", 0, 0, 1), InvalidArgumentError);
  assert.throws(() => r.scale("i32", 0, 1, 2), InvalidArgumentError);
  assert.throws(() => r.divide("i32", 0, 1, 0), InvalidArgumentError);
  r.reduce("f32", "sum", 65536 - 8, 0, 2); // exactly at the end is fine
  r.memory.grow(1);
  r.reduce("f32", "sum", 65536, 0, 2); // sees the grown memory
  const s = WasmReducer.create({ shared: true, initialPages: 1 });
  assert.ok(s.memory.buffer instanceof SharedArrayBuffer);
});

// ---- invalid arguments --------------------------------------------------------------------------

Deno.test("invalid combinations throw InvalidArgumentError naming op and dtype", () => {
  for (const op of ["band", "bor", "bxor"] as const) {
    for (const dtype of ["f32", "f64", "f16", "bf16"] as const) {
      assert.throws(
        () => reduceInto(dtype, op, alloc(dtype, 4), alloc(dtype, 4)),
        (e: unknown) =>
          e instanceof InvalidArgumentError && e.message.includes(op) && e.message.includes(dtype),
      );
    }
  }
  for (const dtype of ["i32", "u32", "i64", "u8", "i8"] as const) {
    assert.throws(
      () => reduceInto(dtype, "premul_sum", alloc(dtype, 4), alloc(dtype, 4)),
      (e: unknown) =>
        e instanceof InvalidArgumentError && e.message.includes("premul_sum") && e.message.includes(dtype),
    );
    assert.throws(() => scaleInto(dtype, alloc(dtype, 4), 2), InvalidArgumentError);
  }
  assert.throws(
    () => reduceInto("f32", "sum", new Float32Array(4), new Float32Array(5)),
    InvalidArgumentError,
  );
  assert.throws(
    () => reduceInto("f32", "sum", new Float64Array(4), new Float64Array(4)),
    InvalidArgumentError,
  );
  assert.throws(() => reduceInto("i32", "sum", new Int32Array(4), new Uint32Array(4)), InvalidArgumentError);
  assert.throws(() => divideInto("i32", new Int32Array(4), 0), InvalidArgumentError);
  assert.throws(() => divideInto("i32", new Int32Array(4), 1.5), InvalidArgumentError);
  assert.throws(() => divideInto("f32", new Float32Array(4), 0), InvalidArgumentError);
});
