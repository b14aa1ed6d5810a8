/**
 * @module
 * The command line of `deno task bench`: the usage text, and {@link parseCli}, which turns argv into a
 * checked {@link BenchOptions} or throws a {@link CliError} with a one-line reason. Nothing runs here.
 */

import { parseArgs } from "node:util";
import type { CpuBind, DType } from "../collectives/mod.ts";
import { isCpuBind } from "../transports/cpu_bind.ts";
import { opByName, type OpName, OPS, type RedOp, REDOPS } from "./catalog.ts";
import { type Mutant, MUTANTS, type PlaceMode, type RunConfig } from "./cases.ts";

/** The usage text. */
export const USAGE = `usage: deno task bench [options]

Starts local ranks through the launcher, checks and times every op at every size, and prints the
rows in nccl-tests' layout (or OSU's, or JSON lines). Results are checked: the first call of each row
and a seeded sample of its timed calls (one in 8, and the last), each on fresh data armed before it
and checked after it, outside the timed region. #wrong must be 0.

what to measure
  --op, --ops LIST     ops, comma-separated, or "all" (default allreduce,broadcast,barrier):
                       ${OPS.join(", ")}
  --min SIZE           smallest size, e.g. 8, 1K (default 8)
  --max SIZE           largest size, up to 1G (default 64M)
  --factor F           size multiplier between rows (default 2)
  --sizes LIST         exact sizes instead, e.g. 8,1K,64M
  --dtype LIST         f32 (default), f64, i32, i64, u8, i8, u32, f16, bf16, or "all"
  --redop LIST         sum (default), prod, min, max, avg, band, bor, bxor, premul_sum, or "all"
  --place MODE         default (each op's natural form), in, out or both (in-place and out-of-place)
  --root R             root rank of rooted ops (default 0)
timing
  --budget S           seconds of timed iterations per row (default 0.3)
  --warmup S           seconds of untimed warm-up calls per row (default 0.3)
  --min-iters N        fewest timed iterations per row (default 5)
  --max-iters N        most timed iterations per row (default 2000)
  --rounds R           run every series R times, interleaved (fresh launches), and report the median
                       round (default 1)
where
  --nproc N            ranks to start on this host (default 2)
  --hosts LIST         host[:slots],... for a run across hosts (see docs/benchmarks.md)
  --transport LIST     auto (default: shared memory on one host), tcp, shm, worker (Worker ranks of one
                       process), ucx; several: one series each
  --bind-to MODE       core (default on Linux): bind each choir rank's main thread to its own CPU
                       (round robin when ranks outnumber CPUs), as mpirun binds Open MPI's ranks;
                       none (default elsewhere): leave placement to the kernel
  --alloc              buffers from pg.alloc (shared memory): same as --buffers alloc
  --buffers MODE       array (default), alloc, or both (one series each)
  --algo LIST          force choir's algorithm (CHOIR_ALGO) per series, e.g. auto,ring,tree; with auto
                       and others it prints, per size, each algorithm's time and whether auto is
                       within 10% of the best
  --compare            also run torch.distributed Gloo and Open MPI (mpi4py) on the same rows,
                       when installed, and print choir's speed ratio to each: Open MPI at its best
                       (its default, each coll_tuned algorithm forced, coll_tuned off: the fastest
                       per row, named); with --rounds, the median of per-round ratios [min-max]
  --limits             only measure this machine's limits (memcpy on one and two cores, shared-memory
                       and TCP round trips, TCP bandwidth; needs a C compiler) and print them
  --python PATH        Python for --compare (default: /usr/bin/python3 or python3, whichever imports them)
  --scale N,N,...      instead: start-up of N simulated ranks through the real store and connection logic
                       (phases, store requests and connections, links, memory; docs/scale.md), with
                       --procs P (default 4), --connect eager|lazy|auto, --algo A (forced), --ops K (more
                       allReduces after the first, timed), --out FILE.jsonl, --plot FILE.svg
output
  --format FMT         nccl (default), osu or json (JSON lines on stdout)
  --json FILE          also write one JSON object per row to FILE
  --plot FILE.svg      draw busbw and latency against size (log-log), one line per series
  --html FILE.html     a report with the plot, the ratio tables and every row
  --progress           show progress on stderr even when it is not a terminal
  --no-progress        never show progress (default: shown when stderr is a terminal)
  --help               this text`;

/** A command-line mistake: the message is one line for the user. */
export class CliError extends Error {
  override name = "CliError";
}

/** Everything `deno task bench` was asked to do. */
export interface BenchOptions {
  /** What every rank measures. */
  run: RunConfig;
  /** Ranks. */
  nproc: number;
  /** Hosts and their slots, when `--hosts` was given. */
  hosts: { host: string; slots: number }[] | null;
  /** choir transports, one series each. */
  transports: string[];
  /** choir buffer kinds, one series each. */
  buffers: ("array" | "alloc")[];
  /** choir algorithms (`auto` = the plan's choice), one series each. */
  algos: string[];
  /** Where choir's local ranks run (`--bind-to`): each on its own CPU, or wherever the kernel puts them. */
  bindTo: CpuBind;
  /** Run the other libraries too. */
  compare: boolean;
  /** Only measure the machine's limits. */
  limits: boolean;
  /** Python interpreter for `--compare`, if given. */
  python?: string;
  /** Rounds of every series. */
  rounds: number;
  /** Output format on stdout. */
  format: "nccl" | "osu" | "json";
  /** JSON lines file. */
  json?: string;
  /** SVG plot file. */
  plot?: string;
  /** HTML report file. */
  html?: string;
  /** Progress display: forced on, off, or automatic (stderr is a terminal). */
  progress: "on" | "off" | "auto";
  /** `--help` was given. */
  help: boolean;
}

const DTYPE_NAMES: readonly DType[] = ["f32", "f64", "i32", "i64", "u8", "i8", "u32", "f16", "bf16"];
const DTYPE_ALIASES: Record<string, DType> = {
  float: "f32",
  float32: "f32",
  double: "f64",
  float64: "f64",
  int32: "i32",
  int: "i32",
  int64: "i64",
  uint8: "u8",
  int8: "i8",
  uint32: "u32",
  half: "f16",
  float16: "f16",
  bfloat16: "bf16",
};
const REDOP_ALIASES: Record<string, RedOp> = { product: "prod", premulsum: "premul_sum", mean: "avg" };

/** Parses a size such as `8`, `64K`, `1M`, `1G` (powers of 1024; a trailing `B` is allowed). */
export function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)(i?B)?$/i.exec(s.trim());
  if (!m) throw new CliError(`not a size: ${s}`);
  const mult = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as "" | "K" | "M" | "G"];
  return Number(m[1]) * mult;
}

/** The sizes from `--min`, `--max` and `--factor`. */
export function sizeRange(min: number, max: number, factor: number): number[] {
  if (!(factor > 1)) throw new CliError(`--factor must be above 1, got ${factor}`);
  const out: number[] = [];
  for (let s = min; s <= max; s = Math.round(s * factor)) out.push(s);
  return out;
}

const list = (s: string) => s.split(",").map((x) => x.trim()).filter((x) => x !== "");

function number(name: string, raw: string, min: number, integer = false): number {
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
    throw new CliError(`--${name} must be ${integer ? "an integer" : "a number"} >= ${min}, got ${raw}`);
  }
  return v;
}

/** The `--mutant` testing aid (not in the usage text: it exists to prove the checks catch bad results). */
function mutantOf(name: string): Mutant {
  if (!(MUTANTS as readonly string[]).includes(name)) {
    throw new CliError(`--mutant must be one of ${MUTANTS.join(", ")}, got ${name}`);
  }
  return name as Mutant;
}

/** Parses argv; throws {@link CliError} on a mistake. */
export function parseCli(argv: readonly string[]): BenchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        nproc: { type: "string", default: "2" },
        hosts: { type: "string" },
        op: { type: "string" },
        ops: { type: "string" },
        min: { type: "string", default: "8" },
        max: { type: "string", default: "64M" },
        factor: { type: "string", default: "2" },
        sizes: { type: "string" },
        dtype: { type: "string", default: "f32" },
        redop: { type: "string", default: "sum" },
        place: { type: "string", default: "default" },
        root: { type: "string", default: "0" },
        budget: { type: "string", default: "0.3" },
        warmup: { type: "string", default: "0.3" },
        "min-iters": { type: "string", default: "5" },
        "max-iters": { type: "string", default: "2000" },
        rounds: { type: "string", default: "1" },
        transport: { type: "string", default: "auto" },
        alloc: { type: "boolean", default: false },
        buffers: { type: "string" },
        algo: { type: "string" },
        "bind-to": { type: "string", default: Deno.build.os === "linux" ? "core" : "none" },
        compare: { type: "boolean", default: false },
        limits: { type: "boolean", default: false },
        python: { type: "string" },
        format: { type: "string", default: "nccl" },
        json: { type: "string" },
        plot: { type: "string" },
        html: { type: "string" },
        progress: { type: "boolean" },
        "no-progress": { type: "boolean", default: false },
        corrupt: { type: "boolean", default: false },
        mutant: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err));
  }

  const opText = values.op ?? values.ops ?? "allreduce,broadcast,barrier";
  const ops: OpName[] = [];
  for (const name of list(opText)) {
    if (name.toLowerCase() === "all") ops.push(...OPS);
    else {
      const op = opByName(name);
      if (!op) throw new CliError(`unknown op ${name} (ops: ${OPS.join(", ")}, or all)`);
      ops.push(op);
    }
  }
  const uniqueOps = [...new Set(ops)];

  const dtypes: DType[] = [];
  for (const name of list(values.dtype)) {
    const k = name.toLowerCase();
    if (k === "all") dtypes.push(...DTYPE_NAMES);
    else if ((DTYPE_NAMES as readonly string[]).includes(k)) dtypes.push(k as DType);
    else if (DTYPE_ALIASES[k]) dtypes.push(DTYPE_ALIASES[k]);
    else throw new CliError(`unknown dtype ${name} (${DTYPE_NAMES.join(", ")}, or all)`);
  }
  const redops: RedOp[] = [];
  for (const name of list(values.redop)) {
    const k = name.toLowerCase().replace(/-/g, "_");
    const alias = REDOP_ALIASES[k.replace(/_/g, "")];
    if (k === "all") redops.push(...REDOPS);
    else if ((REDOPS as readonly string[]).includes(k)) redops.push(k as RedOp);
    else if (alias) redops.push(alias);
    else throw new CliError(`unknown redop ${name} (${REDOPS.join(", ")}, or all)`);
  }

  const sizes = values.sizes !== undefined
    ? list(values.sizes).map(parseSize)
    : sizeRange(parseSize(values.min), parseSize(values.max), number("factor", values.factor, 1));
  if (sizes.length === 0) throw new CliError("no sizes: --min is above --max");
  if (sizes.some((s) => s > 1024 ** 3)) throw new CliError("sizes go up to 1G");
  sizes.sort((a, b) => a - b);

  const place = values.place as PlaceMode;
  if (!["default", "in", "out", "both"].includes(place)) {
    throw new CliError(`--place must be default, in, out or both, got ${values.place}`);
  }

  let hosts: BenchOptions["hosts"] = null;
  let nproc = number("nproc", values.nproc, 1, true);
  if (values.hosts !== undefined) {
    hosts = list(values.hosts).map((h) => {
      const [host, slots = "1"] = h.split(":");
      return { host, slots: number("hosts", slots, 1, true) };
    });
    if (hosts.length === 0) throw new CliError("--hosts names no host");
    nproc = hosts.reduce((a, h) => a + h.slots, 0);
  }
  const root = number("root", values.root, 0, true);
  if (root >= nproc) throw new CliError(`--root ${root} is not a rank of ${nproc}`);

  const transports = [...new Set(list(values.transport).map((t) => t.toLowerCase()))];
  for (const t of transports) {
    if (!["auto", "tcp", "shm", "ucx", "worker"].includes(t)) {
      throw new CliError(`unknown transport ${t} (auto, tcp, shm, ucx, worker)`);
    }
  }
  if (transports.length === 0) throw new CliError("--transport names no transport");

  const bufText = values.buffers ?? (values.alloc ? "alloc" : "array");
  const buffers = bufText === "both" ? ["array", "alloc"] as const : [bufText];
  for (const b of buffers) {
    if (b !== "array" && b !== "alloc") {
      throw new CliError(`--buffers must be array, alloc or both, got ${b}`);
    }
  }
  if (buffers.every((b) => b === "alloc") && transports.every((t) => t === "tcp" || t === "ucx")) {
    throw new CliError("pg.alloc buffers need shared memory: use --transport shm or auto with --alloc");
  }

  const algos = values.algo === undefined ? ["auto"] : [...new Set(list(values.algo))];
  for (const a of algos) {
    if (!/^[a-z_]+$/.test(a)) throw new CliError(`not an algorithm name: ${a}`);
  }

  const bindTo = values["bind-to"];
  if (!isCpuBind(bindTo)) {
    throw new CliError(`--bind-to must be core or none, got ${bindTo}`);
  }
  const format = values.format as BenchOptions["format"];
  if (!["nccl", "osu", "json"].includes(format)) {
    throw new CliError(`--format must be nccl, osu or json, got ${values.format}`);
  }
  const minIters = number("min-iters", values["min-iters"], 1, true);
  const maxIters = number("max-iters", values["max-iters"], minIters, true);

  return {
    run: {
      ops: uniqueOps,
      sizes: [...new Set(sizes)],
      dtypes: [...new Set(dtypes)],
      redops: [...new Set(redops)],
      place,
      root,
      budgetS: number("budget", values.budget, 0),
      warmupS: number("warmup", values.warmup, 0),
      minIters,
      maxIters,
      alloc: false,
      corrupt: values.corrupt,
      ...(values.mutant !== undefined ? { mutant: mutantOf(values.mutant) } : {}),
    },
    nproc,
    hosts,
    transports,
    buffers: [...buffers] as ("array" | "alloc")[],
    algos,
    bindTo,
    compare: values.compare,
    limits: values.limits,
    python: values.python,
    rounds: number("rounds", values.rounds, 1, true),
    format,
    json: values.json,
    plot: values.plot,
    html: values.html,
    progress: values["no-progress"] ? "off" : values.progress ? "on" : "auto",
    help: values.help,
  };
}
