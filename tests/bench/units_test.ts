/**
 * @module
 * The benchmark's pure parts, without starting ranks: command line, rows of a run and their counts,
 * bus factors, expected values, statistics, the nccl-tests and OSU layouts, comparison and algorithm
 * tables, and the SVG plot.
 */

import assert from "node:assert/strict";
import { busFactor, opByName, OPS, shapeOf } from "../../bench/catalog.ts";
import { enumerateCases, type RunConfig } from "../../bench/cases.ts";
import { CliError, parseCli, parseSize } from "../../bench/cli.ts";
import { algoTables } from "../../bench/formats/algos.ts";
import { ncclSink } from "../../bench/formats/nccl.ts";
import { osuSink } from "../../bench/formats/osu.ts";
import { fmtSpread, pairings, ratioTables, speedRatio } from "../../bench/formats/ratios.ts";
import { bestOfGroups } from "../../bench/best.ts";
import { plotSvg } from "../../bench/plot.ts";
import { type BenchRow, finishRow, type Series } from "../../bench/row.ts";
import { median, summarize } from "../../bench/stats.ts";
import {
  access,
  allocTensor,
  castTo,
  countWrong,
  fillWith,
  isChecked,
  moveValue,
  reduceInput,
  reduceResult,
  seedOf,
} from "../../bench/values.ts";

const run = (over: Partial<RunConfig> = {}): RunConfig => ({
  ops: ["allreduce"],
  sizes: [8, 1024],
  dtypes: ["f32"],
  redops: ["sum"],
  place: "default",
  root: 0,
  budgetS: 0.01,
  warmupS: 0,
  minIters: 1,
  maxIters: 10,
  alloc: false,
  corrupt: false,
  ...over,
});

const choir: Series = { label: "choir", lib: "choir", transport: "auto", algo: "auto", buffers: "array" };

/** A finished row of `op` at `bytes` with a median of `timeUs`. */
function fakeRow(
  over: Partial<RunConfig>,
  n: number,
  timeUs: number,
  s: Series = choir,
  index = 0,
): BenchRow {
  const c = enumerateCases(run(over), n)[index];
  return finishRow(
    c,
    {
      index: c.index,
      timeUs,
      meanUs: timeUs,
      p99Us: timeUs * 2,
      minUs: timeUs,
      cvPct: 5,
      iters: 9,
      wrong: 0,
      transport: "shm",
    },
    s,
    n,
  );
}

Deno.test("cli: --op and --ops, all, aliases, sizes, dtypes and redops", () => {
  assert.deepEqual(parseCli(["--op", "all"]).run.ops, [...OPS]);
  assert.deepEqual(parseCli(["--ops", "allReduce,reduce-scatter,all_gather,allToAll"]).run.ops, [
    "allreduce",
    "reduce_scatter",
    "allgather",
    "alltoall",
  ]);
  assert.deepEqual(parseCli([]).run.ops, ["allreduce", "broadcast", "barrier"]);
  assert.equal(opByName("sendRecv"), "sendrecv");
  assert.deepEqual(parseCli(["--min", "8", "--max", "64", "--factor", "2"]).run.sizes, [8, 16, 32, 64]);
  assert.deepEqual(parseCli(["--sizes", "1K,8,64M"]).run.sizes, [8, 1024, 64 << 20]);
  assert.equal(parseSize("1G"), 1024 ** 3);
  assert.equal(parseCli(["--dtype", "all"]).run.dtypes.length, 9);
  assert.deepEqual(parseCli(["--dtype", "float,bfloat16"]).run.dtypes, ["f32", "bf16"]);
  assert.deepEqual(parseCli(["--redop", "product,premul-sum,max"]).run.redops, ["prod", "premul_sum", "max"]);
  assert.equal(parseCli(["--alloc"]).buffers[0], "alloc");
  assert.deepEqual(parseCli(["--algo", "auto,ring,tree"]).algos, ["auto", "ring", "tree"]);
  assert.equal(parseCli(["--hosts", "localhost:3"]).nproc, 3);
});

Deno.test("cli: mistakes are one-line errors", () => {
  assert.throws(() => parseCli(["--op", "allsum"]), CliError);
  assert.throws(() => parseCli(["--transport", "ucp"]), /unknown transport ucp/);
  assert.equal(parseCli(["--transport", "ucx"]).transports[0], "ucx");
  assert.throws(() => parseCli(["--transport", "tcp", "--alloc"]), /shared memory/);
  assert.throws(() => parseCli(["--max", "2G"]), /1G/);
  assert.throws(() => parseCli(["--format", "csv"]), CliError);
  assert.throws(() => parseCli(["--root", "2", "--nproc", "2"]), /root/);
  assert.throws(() => parseCli(["--bogus"]), CliError);
});

Deno.test("cases: counts per op, rounding of blocked ops, placements, redops that fit", () => {
  // Blocked ops round the per-rank block up: 8 B of float32 at 4 ranks is 16 B.
  assert.deepEqual(shapeOf("allgather", 8, 4, 4), { count: 4, chunk: 1, bytes: 16 });
  assert.deepEqual(shapeOf("allreduce", 8, 4, 4), { count: 2, chunk: 2, bytes: 8 });
  assert.deepEqual(shapeOf("barrier", 8, 4, 4), { count: 0, chunk: 0, bytes: 0 });
  const cases = enumerateCases(run({ ops: ["allgather"], sizes: [8, 16], place: "both" }), 4);
  // 8 and 16 B give the same counts at 4 ranks: one size, out then in.
  assert.deepEqual(cases.map((c) => [c.bytes, c.place]), [[16, "out"], [16, "in"]]);
  const red = enumerateCases(
    run({ dtypes: ["f32", "i32"], redops: ["sum", "band", "premul_sum"], sizes: [8] }),
    2,
  );
  assert.deepEqual(red.map((c) => `${c.dtype}/${c.redop}`), [
    "f32/sum",
    "f32/premul_sum",
    "i32/sum",
    "i32/band",
  ]);
  assert.equal(enumerateCases(run({ ops: ["sendrecv"] }), 1).length, 0);
  assert.equal(enumerateCases(run({ ops: ["alltoall"], place: "in" }), 2).length, 0);
  assert.deepEqual(enumerateCases(run({ ops: ["barrier"] }), 2).map((c) => c.bytes), [0]);
});

Deno.test("bus factors are nccl-tests'", () => {
  assert.equal(busFactor("allreduce", 4), 1.5);
  for (const op of ["reduce_scatter", "allgather", "alltoall", "gather", "scatter"] as const) {
    assert.equal(busFactor(op, 4), 0.75);
  }
  for (const op of ["broadcast", "reduce", "sendrecv"] as const) assert.equal(busFactor(op, 4), 1);
  const r = fakeRow({ sizes: [1 << 20] }, 4, 1000);
  assert.ok(Math.abs(r.algbw - (1 << 20) / 1e-3 / 1e9) < 1e-9); // bytes / 1 ms, in GB/s
  assert.ok(Math.abs(r.busbw - r.algbw * 1.5) < 1e-12);
});

Deno.test("values: seeded data, results of every reduce op, dtype rounding and wrapping", () => {
  // Ranks 0..2 at one element: inputs a, b, c; every reduce op from them.
  const at = (seed: number, g: number, redop: "sum" | "prod" = "sum") =>
    [0, 1, 2].map((r) => reduceInput(redop, r, g, seed));
  const [a, b, c] = at(seedOf(0, 0), 7);
  const seed0 = seedOf(0, 0);
  assert.equal(reduceResult("sum", "f32", 3, 7, seed0), a + b + c);
  assert.equal(reduceResult("min", "u8", 3, 7, seed0), Math.min(a, b, c));
  assert.equal(reduceResult("max", "i8", 3, 7, seed0), Math.max(a, b, c));
  assert.equal(reduceResult("avg", "f64", 3, 7, seed0), (a + b + c) / 3);
  assert.equal(reduceResult("avg", "i32", 3, 7, seed0), Math.trunc((a + b + c) / 3));
  assert.equal(reduceResult("band", "i64", 3, 7, seed0), a & b & c);
  assert.equal(reduceResult("bxor", "u32", 3, 7, seed0), a ^ b ^ c);
  assert.equal(reduceResult("premul_sum", "bf16", 3, 7, seed0), (a + b + c) / 2);
  const [p, q, r] = at(seed0, 7, "prod");
  assert.equal(reduceResult("prod", "i32", 3, 7, seed0), p * q * r);
  assert.ok([1, 2].includes(p) && [1, 2, 3, 4].includes(a));
  // Products of 1s and 2s: 2^8 wraps to 0 in i8, as the kernels do.
  let g16 = 0;
  while (Array.from({ length: 16 }, (_, k) => reduceInput("prod", k, g16, seed0)).some((v) => v !== 2)) g16++;
  assert.equal(reduceResult("prod", "i8", 16, g16, seed0), 0);
  // No reduction is the same at every element, at any rank count (the old data's sums were, at 2 and 4).
  for (const n of [2, 3, 4, 8, 17]) {
    for (const redop of ["sum", "prod", "min", "max", "band", "bor", "bxor"] as const) {
      const vals = new Set(Array.from({ length: 256 }, (_, g) => reduceResult(redop, "i32", n, g, seed0)));
      assert.ok(
        vals.size > 1 || (redop === "band" && n >= 8) || (redop === "bor" && n >= 8),
        `${redop} n=${n}`,
      );
    }
  }
  assert.equal(castTo("i8", 200), -56);
  assert.equal(castTo("bf16", 257), 256);
  const seed = seedOf(3, 5);
  // Ranks differ at every element; no short period; another checked call has other data.
  const row = Array.from({ length: 4096 }, (_, g) => moveValue(1, g, seed));
  for (let g = 0; g < 4096; g++) assert.notEqual(moveValue(0, g, seed), row[g]);
  const inputs = Array.from({ length: 4096 }, (_, g) => reduceInput("sum", 0, g, seed));
  for (let p = 1; p <= 1024; p++) {
    assert.ok(inputs.some((v, g) => g + p < 4096 && v !== inputs[g + p]), `period ${p}`);
  }
  for (let p = 1; p <= 1024; p++) {
    assert.ok(row.some((v, g) => g + p < row.length && v !== row[g + p]), `period ${p}`);
  }
  assert.ok(row.filter((v, g) => v !== moveValue(1, g, seedOf(3, 6))).length > 4000);
  for (const d of ["f32", "f64", "i32", "i64", "u8", "i8", "u32", "f16", "bf16"] as const) {
    const t = allocTensor(d, 250);
    fillWith(t, d, 7, (g) => moveValue(2, g, seed));
    assert.equal(access(t, d).get(123), moveValue(2, 130, seed), d);
    assert.equal(countWrong(t, d, 7, (g) => moveValue(2, g, seed)), 0, d);
    access(t, d).set(200, 0);
    assert.equal(countWrong(t, d, 7, (g) => moveValue(2, g, seed)), 1, d);
  }
});

Deno.test("values: one checked iteration in every block of 8, at seeded places, and the last", () => {
  for (const iters of [1, 5, 8, 100, 2000]) {
    const checked = Array.from({ length: iters }, (_, k) => isChecked(7, k, iters));
    assert.ok(checked[iters - 1]);
    for (let b = 0; b + 8 <= iters; b += 8) {
      assert.equal(checked.slice(b, b + 8).filter((x) => x).length - (b + 8 === iters ? 1 : 0) <= 1, true);
      assert.ok(checked.slice(b, b + 8).some((x) => x), `block ${b}`);
    }
  }
  const at = (row: number) => Array.from({ length: 80 }, (_, k) => isChecked(row, k, 1000) ? k % 8 : -1);
  assert.notDeepEqual(at(1), at(2)); // positions differ between rows and blocks
});

Deno.test("stats: median, p99, cv", () => {
  const s = summarize([1, 2, 3, 4, 100]);
  assert.equal(s.timeUs, 3000);
  assert.equal(s.p99Us, 100_000);
  assert.equal(s.minUs, 1000);
  assert.equal(s.iters, 5);
  assert.ok(s.cvPct > 100);
  assert.equal(summarize([2, 4]).timeUs, 3000);
});

Deno.test("nccl layout: out-of-place and in-place side by side, one line per size", () => {
  const lines: string[] = [];
  const sink = ncclSink((l) => lines.push(l), "both");
  const over = { ops: ["allgather" as const], sizes: [1024], place: "both" as const };
  sink.row(fakeRow(over, 2, 10, choir, 0));
  sink.row(fakeRow(over, 2, 12, choir, 1));
  sink.end();
  assert.match(lines[0], /^# choir: allgather, 2 ranks, transport shm$/);
  assert.match(lines[1], /out-of-place\s+in-place/);
  assert.match(
    lines[2],
    /size\s+count\s+type\s+redop\s+root\s+time\s+algbw\s+busbw\s+#wrong\s+p99\s+cv%\s+iters/,
  );
  const data = lines.filter((l) => !l.startsWith("#"));
  assert.equal(data.length, 1);
  assert.match(
    data[0],
    /^\s+1024\s+256\s+float\s+none\s+-1\s+10\.00\s+0\.10\s+0\.051\s+0\s+20\.00\s+5\.0\s+9\s+12\.00/,
  );
});

Deno.test("OSU layout: # Size  Avg Latency(us)", () => {
  const lines: string[] = [];
  const sink = osuSink((l) => lines.push(l));
  sink.row(fakeRow({}, 2, 10));
  sink.end();
  assert.match(lines[1], /^# Size\s+Avg Latency\(us\)/);
  assert.match(lines[2], /^8\s+10\.00\s+10\.00\s+20\.00/);
});

Deno.test("comparison table: ratios per size, Open MPI matched by transport", () => {
  const gloo: Series = { label: "gloo", lib: "gloo", transport: "tcp", algo: "default", buffers: "array" };
  const mpiShm: Series = {
    label: "openmpi shm",
    lib: "openmpi",
    transport: "shm",
    algo: "default",
    buffers: "array",
  };
  const mpiTcp: Series = {
    label: "openmpi tcp",
    lib: "openmpi",
    transport: "tcp",
    algo: "default",
    buffers: "array",
  };
  const tcp: Series = { ...choir, label: "choir tcp", transport: "tcp" };
  const alloc: Series = { ...choir, label: "choir alloc", buffers: "alloc" };
  const p = pairings([choir, tcp, alloc, gloo, mpiShm, mpiTcp]);
  // Like with like: Gloo (TCP) only against choir over TCP; pg.alloc never in a ratio.
  assert.deepEqual(p.map((x) => [x.choir.label, x.others.map((o) => o.label)]), [
    ["choir", ["openmpi shm"]],
    ["choir tcp", ["gloo", "openmpi tcp"]],
  ]);
  const rows = [fakeRow({}, 2, 10, tcp), fakeRow({}, 2, 250, gloo), fakeRow({}, 2, 5, mpiTcp)];
  const text = ratioTables(rows, [tcp, gloo, mpiTcp]).join("\n");
  assert.match(text, /choir\/gloo\s+choir\/openmpi tcp/);
  assert.match(text, /\n\s+8\s+10\.00\s+250\.00\s+5\.00\s+25\.0x\s+0\.50x/);
});

Deno.test("ratios: median of per-round ratios with the spread; Open MPI's fastest variant, named", () => {
  const v = (algo: string): Series => ({
    label: `openmpi shm ${algo}`,
    lib: "openmpi",
    transport: "shm",
    algo,
    buffers: "array",
    group: "openmpi shm",
  });
  const series = [choir, v("default"), v("alg1"), v("alg4")];
  const rounds = (s: Series, us: number[]) => ({ ...fakeRow({}, 2, median(us), s), roundsUs: us });
  const rows = [
    rounds(choir, [10, 20, 10, 10, 10]),
    rounds(series[1], [40, 40, 40, 40, 40]),
    rounds(series[2], [15, 30, 12, 11, 30]), // median 15: the best
    { ...fakeRow({}, 2, NaN, series[3]), unsupported: "cannot" },
  ];
  const best = bestOfGroups(rows, series);
  assert.deepEqual(best.series.map((s) => s.label), ["choir", "openmpi shm"]);
  const folded = best.rows.find((r) => r.series === "openmpi shm")!;
  assert.equal(folded.variant, "alg1");
  assert.equal(folded.defaultUs, 40);
  assert.equal(folded.variants, 2);
  // Per round: 1.5, 1.5, 1.2, 1.1, 3.0 -> median 1.5, from 1.1 to 3.0.
  const r = speedRatio(rows[0], folded);
  assert.deepEqual([r.median, r.min, r.max, r.rounds], [1.5, 1.1, 3, 5]);
  assert.equal(fmtSpread(r), "1.50x [1.10-3.00x]");
  const text = ratioTables(best.rows, best.series).join("\n");
  assert.match(text, /best variant\s+default\(us\)/);
  assert.match(text, /\n\s+8\s+10\.00\s+15\.00\s+alg1\s+40\.00\s+1\.50x \[1\.10-3\.00x\]/);
});

Deno.test("algorithm table: auto within 10% of the best forced algorithm", () => {
  const s = (algo: string): Series => ({ ...choir, label: `choir algo=${algo}`, algo });
  const rows = [
    fakeRow({}, 2, 10.5, s("auto")),
    fakeRow({}, 2, 10, s("ring")),
    fakeRow({}, 2, 20, s("tree")),
    fakeRow({}, 2, 30, s("auto"), 1),
    fakeRow({}, 2, 40, s("ring"), 1),
    fakeRow({}, 2, 20, s("tree"), 1),
  ];
  const { lines, verdicts } = algoTables(rows, ["auto", "ring", "tree"]);
  assert.deepEqual(verdicts.map((v) => [v.bytes, v.best, v.ok]), [[8, "ring", true], [1024, "tree", false]]);
  assert.match(lines.join("\n"), /more than 10% slower than the best forced algorithm at 1 size/);
});

Deno.test("plot: two log-log panels per op, a line per series, escaped labels", () => {
  const other: Series = { label: "a<b", lib: "gloo", transport: "tcp", algo: "default", buffers: "array" };
  const rows = [0, 1].flatMap((i) => [fakeRow({}, 2, 10 + i, choir, i), fakeRow({}, 2, 20, other, i)]);
  const svg = plotSvg(rows, "t");
  assert.match(svg, /^<\?xml/);
  assert.equal(svg.match(/<polyline /g)?.length, 4); // 2 series x (busbw, time)
  assert.match(svg, /stroke-dasharray/); // other libraries dashed
  assert.match(svg, /a&lt;b/);
  assert.match(svg, /allreduce: median time \(us\)/);
  assert.ok(svg.trimEnd().endsWith("</svg>"));
});
