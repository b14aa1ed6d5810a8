/**
 * @module
 * `deno task bench` end to end, as a user runs it (bench/main.ts through Deno.Command), with tiny
 * budgets: every op on shared memory, every op and placement over TCP on 3 ranks, a deliberately
 * corrupted result that `#wrong` must catch, the algorithm table, the output files, the progress
 * display staying out of piped output, command-line mistakes, and (where torch and Open MPI are
 * installed) `--compare`.
 */

import assert from "node:assert/strict";
import { OPS } from "../../bench/catalog.ts";
import type { BenchRow } from "../../bench/row.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const QUICK = ["--budget", "0.02", "--warmup", "0.01", "--min-iters", "2", "--max-iters", "200"];

/** Runs the bench with `args`; kills it after `deadlineMs`. */
async function bench(args: string[], deadlineMs = 120_000) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "bench/main.ts", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(deadlineMs),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const rowsOf = (jsonl: string): BenchRow[] =>
  jsonl.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as BenchRow);

Deno.test("--op all covers every op on 2 ranks, every result right; json, plot and html files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "choir-bench-test-" });
  try {
    const r = await bench([
      "--op",
      "all",
      "--min",
      "8",
      "--max",
      "4K",
      "--factor",
      "8",
      ...QUICK,
      "--json",
      `${dir}/rows.jsonl`,
      "--plot",
      `${dir}/plot.svg`,
      "--html",
      `${dir}/report.html`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /# Out of bounds values : 0 OK/);
    // Piped stderr: no progress line, no escape codes.
    assert.ok(!r.stderr.includes("\r") && !r.stderr.includes("\x1b["), r.stderr);
    const rows = rowsOf(await Deno.readTextFile(`${dir}/rows.jsonl`));
    assert.deepEqual([...new Set(rows.map((x) => x.op))].sort(), [...OPS].sort());
    assert.equal(rows.filter((x) => x.wrong !== 0).length, 0);
    for (const x of rows) {
      assert.ok(x.timeUs > 0 && x.iters >= 2 && Number.isFinite(x.cvPct) && x.p99Us >= x.timeUs, x.op);
    }
    const svg = await Deno.readTextFile(`${dir}/plot.svg`);
    assert.match(svg, /<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.ok((svg.match(/<polyline /g) ?? []).length >= 2 * (OPS.length - 1)); // barrier has no size
    const html = await Deno.readTextFile(`${dir}/report.html`);
    assert.match(html, /<svg /);
    assert.equal((html.match(/<tr>/g) ?? []).length, rows.length + 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every op, both placements, three dtypes, two reduce ops over tcp on 3 ranks (JSON lines)", async () => {
  const r = await bench([
    "--op",
    "all",
    "--place",
    "both",
    "--sizes",
    "8,100",
    "--dtype",
    "f32,bf16,i64",
    "--redop",
    "sum,max",
    "--nproc",
    "3",
    "--transport",
    "tcp",
    "--format",
    "json",
    ...QUICK,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const rows = rowsOf(r.stdout);
  assert.equal(rows.filter((x) => x.wrong !== 0).length, 0);
  assert.ok(rows.every((x) => x.transport === "tcp" && x.nranks === 3));
  assert.ok(
    rows.some((x) => x.op === "reduce_scatter" && x.inPlace && x.dtype === "bf16" && x.redop === "max"),
  );
  assert.ok(rows.some((x) => x.op === "allgather" && !x.inPlace && x.dtype === "i64"));
  // 100 B of float32 over 3 ranks: blocks of 9 elements, 108 B.
  assert.ok(rows.some((x) => x.op === "alltoall" && x.dtype === "f32" && x.bytes === 108));
});

Deno.test("a deliberately corrupted result shows in #wrong and fails the run", async () => {
  const r = await bench([
    "--op",
    "allreduce,allgather",
    "--sizes",
    "8,1K",
    "--corrupt",
    "--progress",
    ...QUICK,
  ]);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout, /# Out of bounds values : [1-9]\d* FAILED/);
  const lines = r.stdout.split("\n").filter((l) => /^\s+\d/.test(l));
  assert.equal(lines.length, 4);
  for (const l of lines) {
    const wrong = Number(l.trim().split(/\s+/)[8]); // size count type redop root time algbw busbw #wrong
    assert.ok(wrong > 0, l);
  }
  // --progress draws on stderr even when it is not a terminal.
  assert.ok(r.stderr.includes("\r\x1b[2K["), r.stderr);
  assert.match(r.stderr, /\[[#.]+\] \d+\/4 rows/);
});

Deno.test("the checks catch a call that does nothing, writes the wrong place or skips its copy", async () => {
  // Every mutant misbehaves from a row's second call on, as a subtle bug would: only the checks of
  // timed iterations can see it (the old check, once per row and then on zeros, saw none of them).
  const ops = "allreduce,broadcast,reduce,allgather,reduce_scatter,alltoall,gather,scatter,sendrecv";
  for (const mutant of ["noop", "misplace", "skipcopy"]) {
    for (const transport of ["shm", "tcp"]) {
      const r = await bench([
        "--op",
        ops,
        "--sizes",
        "4K",
        "--transport",
        transport,
        "--mutant",
        mutant,
        "--format",
        "json",
        ...QUICK,
      ]);
      assert.equal(r.code, 1, `${mutant} ${transport}: ${r.stderr}`);
      const rows = rowsOf(r.stdout);
      assert.equal(rows.length, ops.split(",").length);
      for (const x of rows) assert.ok(x.wrong > 0, `${mutant} over ${transport}: ${x.op} passed`);
    }
  }
  const bad = await bench(["--mutant", "sometimes"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--mutant must be one of noop, misplace, skipcopy/);
});

Deno.test("--algo prints each algorithm's time and whether auto is within 10% of the best", async () => {
  const r = await bench([
    "--op",
    "allreduce",
    "--sizes",
    "8,4K",
    "--transport",
    "tcp",
    "--algo",
    "auto,ring",
    ...QUICK,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /# choir tcp algo=ring: allreduce, 2 ranks, transport tcp, algo ring/);
  assert.match(r.stdout, /size\s+auto\s+ring\s+best\s+auto\/best\s+within 10%/);
  assert.match(r.stdout, /\n\s+4096\s+[\d.]+\s+[\d.]+\s+ring [\d.]+\s+[\d.]+x\s+(yes|NO)/);
  assert.match(r.stdout, /# auto is (within 10%|more than 10% slower)/);
});

Deno.test("OSU layout on stdout, and mistakes exit 2 with a reason", async () => {
  const osu = await bench(["--op", "broadcast", "--sizes", "8", "--format", "osu", ...QUICK]);
  assert.equal(osu.code, 0, osu.stderr);
  assert.match(osu.stdout, /# Size\s+Avg Latency\(us\)/);
  const ucx = await bench(["--transport", "ucp"]);
  assert.equal(ucx.code, 2);
  assert.match(ucx.stderr, /unknown transport ucp/);
  const hosts = await bench(["--hosts", "node-a:2,node-b:2"]);
  assert.equal(hosts.code, 2);
  assert.match(hosts.stderr, /other hosts \(node-a, node-b\)/);
});

/** Whether Debian's Python imports `mods` (and, for mpi4py, mpirun exists), as on CI. */
async function pythonHas(mods: string): Promise<boolean> {
  try {
    const py = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", `import ${mods}`],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!py.success) return false;
    if (!mods.includes("mpi4py")) return true;
    const mpi = await new Deno.Command("mpirun", { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return mpi.success;
  } catch {
    return false;
  }
}

const hasMpi = await pythonHas("mpi4py, numpy");
const hasTorch = await pythonHas("torch, numpy");
if (!hasMpi) {
  console.log("run_test.ts: --compare skipped: Debian's python3 lacks mpi4py/numpy or mpirun is missing");
}
if (!hasTorch) {
  console.log("run_test.ts: --compare runs without Gloo: Debian's python3 lacks torch (python3-torch)");
}

Deno.test({
  name:
    "--compare: Open MPI at its best (every coll_tuned variant, the fastest named), Gloo over TCP, ratios over rounds",
  ignore: !hasMpi,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "choir-compare-test-" });
    try {
      const r = await bench([
        "--compare",
        "--op",
        "allreduce,reduce_scatter",
        "--sizes",
        "8,4K",
        "--transport",
        "tcp,shm",
        "--rounds",
        "2",
        "--json",
        `${dir}/rows.jsonl`,
        ...QUICK,
      ], 600_000);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /# Out of bounds values : 0 OK/);
      const rows = rowsOf(await Deno.readTextFile(`${dir}/rows.jsonl`));
      // Every Open MPI variant ran, and every one checked right.
      const variants = new Set(rows.filter((x) => x.lib === "openmpi").map((x) => x.series));
      for (const v of ["default", "alg1", "alg6", "notuned"]) {
        for (const wire of ["shm", "tcp"]) {
          assert.ok(variants.has(`openmpi ${wire} ${v}`), `openmpi ${wire} ${v}`);
        }
      }
      assert.equal(rows.filter((x) => x.wrong !== 0).length, 0);
      // The fastest variant per row, named, with the default beside it.
      const best = rows.filter((x) => x.series === "openmpi shm" && x.op === "allreduce");
      assert.equal(best.length, 2);
      for (const b of best) {
        assert.ok(b.variant && b.variants! >= 7 && Number.isFinite(b.defaultUs!), JSON.stringify(b));
        const mine = rows.filter((x) =>
          x.series.startsWith("openmpi shm ") && x.bytes === b.bytes && x.op === "allreduce"
        );
        assert.equal(b.timeUs, Math.min(...mine.filter((x) => !x.unsupported).map((x) => x.timeUs)));
      }
      assert.match(r.stdout, /# allreduce float sum in-place, 2 ranks: choir shm against openmpi shm\n/);
      assert.match(r.stdout, /best variant\s+default\(us\)/);
      // Two rounds: each ratio is the median of two per-round ratios, with their range.
      assert.match(
        r.stdout,
        /\n\s+4096\s+[\d.]+\s+[\d.]+\s+(default|\d+ [\w-]+|coll \^tuned)\s+[\d.]+\s+[\d.]+x \[[\d.]+-[\d.]+x\]/,
      );
      if (hasTorch) {
        assert.match(r.stdout, /choir tcp against gloo, openmpi tcp/);
        assert.match(
          r.stdout,
          /# gloo cannot run reduce_scatter float sum: Gloo in torch \S+ has no reduce_scatter/,
        );
      }
      // Gloo (TCP) is never set against choir's shared memory.
      assert.doesNotMatch(r.stdout, /choir shm against [^\n]*gloo/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
