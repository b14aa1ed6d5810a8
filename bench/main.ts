/**
 * @module
 * `deno task bench`: starts local ranks through the launcher and prints, for allreduce, broadcast
 * and barrier, a table in nccl-tests' layout with every result checked. `--json FILE` also writes
 * JSON lines. Run `deno task bench --help` for the options.
 */

import { parseArgs } from "node:util";
import { launch } from "../ddp/launch.ts";
import type { BenchOp, BenchRow } from "./measure.ts";
import { header, parseSize, row } from "./table.ts";

const USAGE = `usage: deno task bench [options]
  --nproc N          ranks to start on this host (default 2)
  --ops LIST         comma-separated: allreduce,broadcast,barrier (default all three)
  --min SIZE         smallest message, e.g. 8, 1K (default 8)
  --max SIZE         largest message, e.g. 64M (default 64M)
  --factor F         size multiplier between rows (default 2)
  --budget S         seconds of timed iterations per row (default 0.3)
  --min-iters N      fewest timed iterations per row (default 5)
  --max-iters N      most timed iterations per row (default 2000)
  --transport NAME   auto (default: shared memory between local ranks), tcp or shm
  --json FILE        also write one JSON object per row to FILE
  --alloc            buffers from pg.alloc (shared memory on one host): no copy in or out
  --help             this text`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    nproc: { type: "string", default: "2" },
    ops: { type: "string", default: "allreduce,broadcast,barrier" },
    min: { type: "string", default: "8" },
    max: { type: "string", default: "64M" },
    factor: { type: "string", default: "2" },
    budget: { type: "string", default: "0.3" },
    "min-iters": { type: "string", default: "5" },
    "max-iters": { type: "string", default: "2000" },
    transport: { type: "string", default: "auto" },
    json: { type: "string" },
    alloc: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const nproc = Number(values.nproc);
const ops = values.ops.split(",").map((s) => s.trim()) as BenchOp[];
for (const op of ops) {
  if (!["allreduce", "broadcast", "barrier"].includes(op)) {
    console.error(`unknown op ${op}\n${USAGE}`);
    Deno.exit(2);
  }
}
const sizes: number[] = [];
for (let s = parseSize(values.min); s <= parseSize(values.max); s *= Number(values.factor)) sizes.push(s);
const cfg = {
  ops,
  sizes,
  budgetS: Number(values.budget),
  minIters: Number(values["min-iters"]),
  maxIters: Number(values["max-iters"]),
  alloc: values.alloc,
};

const jsonFile = values.json
  ? await Deno.open(values.json, { write: true, create: true, truncate: true })
  : null;
const enc = new TextEncoder();
let lastOp = "";
const rows: BenchRow[] = [];
console.log(
  `# choir bench: ${nproc} ranks, ${values.transport}, sizes ${values.min}..${values.max}${
    values.alloc ? ", pg.alloc buffers" : ""
  }`,
);
const result = await launch({
  program: new URL("./rank.ts", import.meta.url).pathname,
  args: [JSON.stringify(cfg)],
  nprocPerNode: nproc,
  env: { CHOIR_TRANSPORT: values.transport },
  onOutput: (rank, stream, line) => {
    if (rank === 0 && stream === "stdout" && line.startsWith("ROW ")) {
      const r = JSON.parse(line.slice(4)) as BenchRow;
      rows.push(r);
      if (r.op !== lastOp) {
        console.log(`${lastOp ? "\n" : ""}${header(r.op, r.nranks, r.transport)}`);
        lastOp = r.op;
      }
      console.log(row(r));
      jsonFile?.writeSync(enc.encode(JSON.stringify(r) + "\n"));
    } else {
      console.error(`[rank ${rank}] ${line}`);
    }
  },
});
jsonFile?.close();
const wrong = rows.reduce((a, r) => a + r.wrong, 0);
console.log(`\n# Out of bounds values : ${wrong} ${wrong ? "FAILED" : "OK"}`);
if (result.code !== 0) {
  console.error(`bench: a rank failed (exit ${result.code})`);
  Deno.exit(result.code);
}
Deno.exit(wrong ? 1 : 0);
