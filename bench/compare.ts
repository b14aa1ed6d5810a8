/**
 * @module
 * `--compare`: finds torch.distributed (Gloo) and Open MPI (mpi4py) on this machine, and runs the
 * run's rows through our scripts in bench/compare/ (gloo.py, mpi.py; method in common.py), which
 * print the same `CASE`/`ROW` lines as choir's ranks. Gloo runs over TCP loopback (it has no algorithm
 * knobs); Open MPI per kind of choir transport in the run (shared memory: ob1 + vader; TCP loopback:
 * ob1 + tcp; UCX), and on each at its best: its default choice, then each algorithm of coll_tuned
 * forced (as ompi_info lists them for the run's ops), then coll_tuned off; best.ts keeps the fastest.
 */

import { splitLines } from "../launch/output.ts";
import type { Case, RunConfig } from "./cases.ts";
import type { OpName } from "./catalog.ts";
import { parseLine, type Series } from "./row.ts";
import type { SeriesHandlers } from "./run_choir.ts";

/** The comparison libraries found, and why others are missing. */
export interface CompareTools {
  /** Python that imports torch.distributed and numpy. */
  gloo?: string;
  /** Python that imports mpi4py and numpy, and mpirun; the coll_tuned algorithms of each MPI call. */
  mpi?: { python: string; mpirun: string; algorithms: TunedAlgorithms };
  /** One line per library that cannot run here, saying why. */
  missing: string[];
}

const HERE = new URL("./compare/", import.meta.url).pathname;

/** coll_tuned's algorithms per MPI call (`allreduce`, `bcast`, ...): id -> name, without 0 ("ignore"). */
export type TunedAlgorithms = Map<string, Map<number, string>>;

/** The MPI call (coll_tuned's name) each op of bench/compare/mpi.py makes; ops not listed have no knob. */
const MPI_CALL: Partial<Record<OpName, string>> = {
  allreduce: "allreduce",
  broadcast: "bcast",
  reduce: "reduce",
  allgather: "allgather",
  allgather_list: "allgather",
  reduce_scatter: "reduce_scatter_block",
  reduce_scatter_list: "reduce_scatter_block",
  alltoall: "alltoall",
  gather: "gather",
  gather_list: "gather",
  scatter: "scatter",
  scatter_list: "scatter",
  barrier: "barrier",
};

/** Parses `ompi_info --param coll tuned --level 9`: each `<call>_algorithm`'s valid values. */
export function parseTunedAlgorithms(text: string): TunedAlgorithms {
  const out: TunedAlgorithms = new Map();
  let call: string | null = null; // the parameter whose valid values come next
  for (const line of text.split("\n")) {
    if (line.includes('parameter "')) {
      call = /parameter "coll_tuned_(\w+)_algorithm"/.exec(line)?.[1] ?? null;
      continue;
    }
    const v = /Valid values: (.*)$/.exec(line);
    if (!call || !v) continue;
    const algs = new Map<number, string>();
    for (const m of v[1].matchAll(/(\d+):"([^"]+)"/g)) if (m[1] !== "0") algs.set(Number(m[1]), m[2]);
    out.set(call, algs);
    call = null;
  }
  return out;
}

/** The coll_tuned algorithms of this Open MPI (empty when ompi_info is missing or says nothing). */
async function tunedAlgorithms(): Promise<TunedAlgorithms> {
  try {
    const out = await new Deno.Command("ompi_info", {
      args: ["--param", "coll", "tuned", "--level", "9"],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
      signal: AbortSignal.timeout(30_000),
    }).output();
    return parseTunedAlgorithms(new TextDecoder().decode(out.stdout));
  } catch {
    return new Map();
  }
}

/** One way of running Open MPI: its own choice, one forced coll_tuned algorithm, or coll_tuned off. */
export interface MpiVariant {
  /** `default`, `alg<K>` or `notuned`: the series label's suffix. */
  id: string;
  /** mpirun arguments that select it. */
  mca: string[];
  /** What it runs for `op` (`default`, `4 ring`, `coll ^tuned`); `default` where K is not an algorithm of op. */
  nameFor(op: OpName): string;
}

/**
 * Open MPI's variants for `ops`: the default, algorithm K = 1.. up to the most any op's call has (each
 * call gets K where it has a K-th algorithm, its default otherwise), and coll_tuned off.
 */
export function mpiVariants(algorithms: TunedAlgorithms, ops: readonly OpName[]): MpiVariant[] {
  const calls = [...new Set(ops.map((op) => MPI_CALL[op]).filter((c): c is string => !!c))];
  const most = Math.max(0, ...calls.map((c) => Math.max(0, ...(algorithms.get(c)?.keys() ?? []))));
  const out: MpiVariant[] = [{ id: "default", mca: [], nameFor: () => "default" }];
  for (let k = 1; k <= most; k++) {
    const forced = calls.filter((c) => algorithms.get(c)?.has(k));
    out.push({
      id: `alg${k}`,
      mca: [
        "--mca",
        "coll_tuned_use_dynamic_rules",
        "1",
        ...forced.flatMap((c) => ["--mca", `coll_tuned_${c}_algorithm`, String(k)]),
      ],
      nameFor: (op) => {
        const call = MPI_CALL[op];
        const name = call ? algorithms.get(call)?.get(k) : undefined;
        return name ? `${k} ${name}` : "default";
      },
    });
  }
  if (calls.length > 0) {
    out.push({
      id: "notuned",
      mca: ["--mca", "coll", "^tuned"],
      nameFor: () => "coll ^tuned",
    });
  }
  return out;
}

/** Whether `cmd args` runs and exits 0 within `ms`. */
async function works(cmd: string, args: string[], ms = 60_000): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      stdout: "null",
      stderr: "null",
      stdin: "null",
      signal: AbortSignal.timeout(ms),
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Looks for the libraries: Python is `python` if given, else the first of Debian's /usr/bin/python3
 * and `python3` on PATH that imports the library (a pyenv or venv Python usually cannot).
 */
export async function findCompareTools(python?: string): Promise<CompareTools> {
  const pythons = python ? [python] : ["/usr/bin/python3", "python3"];
  const first = async (mods: string) => {
    for (const py of pythons) if (await works(py, ["-c", `import ${mods}`])) return py;
    return undefined;
  };
  const missing: string[] = [];
  const gloo = await first("torch.distributed, numpy");
  if (!gloo) {
    missing.push(`gloo: no Python among ${pythons.join(", ")} imports torch (Debian: python3-torch)`);
  }
  let mpi: CompareTools["mpi"];
  const mpiPy = await first("mpi4py, numpy");
  if (!mpiPy) {
    missing.push(`openmpi: no Python among ${pythons.join(", ")} imports mpi4py (Debian: python3-mpi4py)`);
  } else if (!(await works("mpirun", ["--version"]))) {
    missing.push("openmpi: mpirun not found (Debian: openmpi-bin)");
  } else mpi = { python: mpiPy, mpirun: "mpirun", algorithms: await tunedAlgorithms() };
  return { gloo, mpi, missing };
}

/**
 * The series `--compare` adds for the choir transports of the run: Gloo, and per wire every Open MPI
 * variant for `ops` (labels `openmpi shm default`, `openmpi shm alg4`, ...; `group` is `openmpi shm`).
 */
export function compareSeries(
  tools: CompareTools,
  choirTransports: readonly string[],
  ops: readonly OpName[],
): Series[] {
  const out: Series[] = [];
  const base = { algo: "default", buffers: "array" as const };
  if (tools.gloo) out.push({ label: "gloo", lib: "gloo", transport: "tcp", ...base });
  if (tools.mpi) {
    // Each choir transport is compared with the Open MPI variant on the same wire (UCX: pml ucx);
    // Worker ranks share memory, so Open MPI's shared-memory transport is their counterpart.
    const kinds = new Set<string>(choirTransports.map((t) => (t === "tcp" || t === "ucx" ? t : "shm")));
    for (const k of ["shm", "tcp", "ucx"]) {
      if (!kinds.has(k)) continue;
      for (const v of mpiVariants(tools.mpi.algorithms, ops)) {
        out.push({
          variantNames: Object.fromEntries(ops.map((op) => [op, v.nameFor(op)])),
          label: `openmpi ${k} ${v.id}`,
          lib: "openmpi",
          transport: k,
          ...base,
          algo: v.id,
          group: `openmpi ${k}`,
        });
      }
    }
  }
  return out;
}

/** The command line of a comparison series. */
function commandOf(
  s: Series,
  tools: CompareTools,
  ops: readonly OpName[],
  nproc: number,
  runFile: string,
): string[] {
  if (s.lib === "gloo") return [tools.gloo!, `${HERE}gloo.py`, "--world", String(nproc), runFile];
  const { python, mpirun, algorithms } = tools.mpi!;
  const variant = mpiVariants(algorithms, ops).find((v) => v.id === s.algo);
  // Debian's openmpi-mca-params.conf disables pml ucx; the command line turns it back on, with any
  // UCX transport and device (shared memory and CMA here, verbs where present).
  const pml = s.transport === "ucx"
    ? ["ucx", "--mca", "pml_ucx_tls", "any", "--mca", "pml_ucx_devices", "any", "--mca", "osc", "^ucx"]
    : [
      "ob1",
      ...(s.transport === "tcp"
        ? ["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"]
        : ["--mca", "btl", "vader,self"]),
    ];
  const root = Deno.uid() === 0 ? ["--allow-run-as-root"] : [];
  return [
    mpirun,
    ...root,
    "--oversubscribe",
    "-np",
    String(nproc),
    "--mca",
    "pml",
    ...pml,
    ...(variant?.mca ?? []),
    python,
    `${HERE}mpi.py`,
    "--transport",
    s.transport,
    runFile,
  ];
}

/**
 * Runs comparison series `s` on the run's `cases` over `nproc` ranks; resolves to its exit code.
 * The job is stopped (SIGTERM, then SIGKILL) if it outlives a deadline generous for the rows asked.
 */
export async function runCompare(
  s: Series,
  tools: CompareTools,
  cfg: RunConfig,
  cases: readonly Case[],
  nproc: number,
  h: SeriesHandlers,
): Promise<number> {
  const runFile = await Deno.makeTempFile({ prefix: "choir-bench-", suffix: ".json" });
  try {
    const run = {
      budgetS: cfg.budgetS,
      warmupS: cfg.warmupS,
      minIters: cfg.minIters,
      maxIters: cfg.maxIters,
    };
    await Deno.writeTextFile(runFile, JSON.stringify({ run, cases }));
    const [cmd, ...args] = commandOf(s, tools, cfg.ops, nproc, runFile);
    const child = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { PYTHONUNBUFFERED: "1", OMP_NUM_THREADS: "1", GLOO_SOCKET_IFNAME: "lo" },
    }).spawn();
    const deadlineMs = 120_000 + cases.length * (30_000 + 2000 * (cfg.warmupS + cfg.budgetS));
    let killer: ReturnType<typeof setTimeout> | undefined;
    const timer = setTimeout(() => {
      h.onLog(`${s.label}: still running after ${Math.round(deadlineMs / 1000)} s; stopping it`);
      child.kill("SIGTERM");
      killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    }, deadlineMs);
    const pipes = Promise.all([
      splitLines(child.stdout, (lines) => {
        for (const line of lines) {
          const m = parseLine(line);
          if (m?.kind === "case") h.onCase(m.index);
          else if (m?.kind === "row") h.onRow(m.raw);
          else if (line.trim() !== "") h.onLog(`[${s.label}] ${line}`);
        }
      }),
      splitLines(child.stderr, (lines) => lines.forEach((l) => h.onLog(`[${s.label}] ${l}`))),
    ]);
    const status = await child.status;
    await pipes;
    clearTimeout(timer);
    if (killer !== undefined) clearTimeout(killer);
    return status.code;
  } finally {
    await Deno.remove(runFile).catch(() => {});
  }
}
