/**
 * @module
 * `--compare`: finds torch.distributed (Gloo) and Open MPI (mpi4py) on this machine, and runs the
 * run's rows through our scripts in bench/compare/ (gloo.py, mpi.py; method in common.py), which
 * print the same `CASE`/`ROW` lines as choir's ranks. Gloo runs over TCP loopback; Open MPI once per
 * kind of choir transport in the run: shared memory (ob1 + vader) and/or TCP loopback (ob1 + tcp).
 */

import { splitLines } from "../ddp/launch_output.ts";
import type { Case, RunConfig } from "./cases.ts";
import { parseLine, type Series } from "./row.ts";
import type { SeriesHandlers } from "./run_choir.ts";

/** The comparison libraries found, and why others are missing. */
export interface CompareTools {
  /** Python that imports torch.distributed and numpy. */
  gloo?: string;
  /** Python that imports mpi4py and numpy, and mpirun. */
  mpi?: { python: string; mpirun: string };
  /** One line per library that cannot run here, saying why. */
  missing: string[];
}

const HERE = new URL("./compare/", import.meta.url).pathname;

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
  } else mpi = { python: mpiPy, mpirun: "mpirun" };
  return { gloo, mpi, missing };
}

/** The series `--compare` adds for the choir transports of the run. */
export function compareSeries(tools: CompareTools, choirTransports: readonly string[]): Series[] {
  const out: Series[] = [];
  const base = { algo: "default", buffers: "array" as const };
  if (tools.gloo) out.push({ label: "gloo", lib: "gloo", transport: "tcp", ...base });
  if (tools.mpi) {
    // Each choir transport is compared with the Open MPI variant on the same wire (UCX: pml ucx).
    const kinds = new Set<string>(choirTransports.map((t) => (t === "tcp" || t === "ucx" ? t : "shm")));
    for (const k of ["shm", "tcp", "ucx"]) {
      if (kinds.has(k)) out.push({ label: `openmpi ${k}`, lib: "openmpi", transport: k, ...base });
    }
  }
  return out;
}

/** The command line of a comparison series. */
function commandOf(s: Series, tools: CompareTools, nproc: number, runFile: string): string[] {
  if (s.lib === "gloo") return [tools.gloo!, `${HERE}gloo.py`, "--world", String(nproc), runFile];
  const { python, mpirun } = tools.mpi!;
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
    const [cmd, ...args] = commandOf(s, tools, nproc, runFile);
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
