/**
 * @module
 * This machine's physical limits, the yardstick for the benchmark's rows: memcpy bandwidth on one and
 * two cores, a shared-memory ping-pong and a TCP loopback round trip, and TCP loopback bandwidth, all
 * measured by a small C program (bench/limits.c) compiled here with `cc -O2 -pthread` and run once
 * (a few seconds). Run it on a quiet machine: busy cores change every figure. Wiring it into
 * `deno task bench --limits` and comparing rows against it is left to the benchmark's command line.
 *
 * As a program: `deno run --allow-all bench/limits.ts [--json FILE]` prints the table (and writes the JSON).
 */

import { ChoirError, LibraryUnavailableError } from "../errors.ts";

/** What bench/limits.c measured, with the compiler that built it and when. */
export interface MachineLimits {
  /** memcpy of 64 MiB buffers by one thread, GB/s (1e9 bytes copied per second; median of 11). */
  memcpyGBs1: number;
  /** The same with two threads copying their own 64 MiB buffers at once: GB/s per thread (mean of medians). */
  memcpyGBs2: number;
  /** The two threads' medians added: what two cores copy together, GB/s. */
  memcpyGBs2Total: number;
  /**
   * Median round trip of 8 bytes between two processes over a shared page, each side spinning (then
   * yielding) on an atomic in its own cache line, microseconds (20,000 round trips).
   */
  shmRttUs: number;
  /** The fastest of those round trips, microseconds. */
  shmRttUsMin: number;
  /** Median 8-byte round trip over TCP loopback between two processes (TCP_NODELAY, blocking reads), us. */
  tcpRttUs: number;
  /**
   * The same with both sides polling non-blocking reads instead of sleeping in the kernel, us. On an idle
   * virtual machine a blocking read pays for waking a halted CPU and this is the faster of the two.
   */
  tcpRttUsPoll: number;
  /** One TCP loopback stream, 4 MiB writes, GB/s (1 GiB timed after 256 MiB of warm-up). */
  tcpGBs: number;
  /** Both directions of one TCP loopback connection at once, GB/s per direction (mean of the two). */
  tcpGBsBoth: number;
  /** Online processors. */
  cpus: number;
  /** One-minute load average when the measurement started (a busy machine skews every figure). */
  loadAvg1: number;
  /** The compiler that built bench/limits.c: its name and the first line of its `--version`. */
  cc: string;
  /** When the measurement finished, ISO 8601. */
  date: string;
}

/** The figures bench/limits.c prints in its JSON line: every one a positive number. */
export const MEASURED = [
  "memcpyGBs1",
  "memcpyGBs2",
  "memcpyGBs2Total",
  "shmRttUs",
  "shmRttUsMin",
  "tcpRttUs",
  "tcpRttUsPoll",
  "tcpGBs",
  "tcpGBsBoth",
  "cpus",
] as const;

const SOURCE = new URL("./limits.c", import.meta.url).pathname;
const COMPILERS = ["cc", "gcc", "clang"];
const COMPILE_TIMEOUT_MS = 60_000;
const RUN_TIMEOUT_MS = 120_000;

/** Runs `cmd args`, returning its exit status and output; never throws for a missing command. */
async function runCommand(
  cmd: string,
  args: string[],
  ms: number,
): Promise<{ ok: boolean; stdout: string; stderr: string; missing?: boolean; timedOut?: boolean }> {
  const signal = AbortSignal.timeout(ms);
  try {
    const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped", signal })
      .output();
    const dec = new TextDecoder();
    return {
      ok: out.success,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
      timedOut: signal.aborted,
    };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { ok: false, stdout: "", stderr: "", missing: true };
    throw err;
  }
}

/**
 * The first C compiler found on PATH (`cc`, `gcc`, then `clang`) as its name and the first line of its
 * `--version`, or null when there is none.
 */
export async function findCompiler(): Promise<{ cmd: string; version: string } | null> {
  for (const cmd of COMPILERS) {
    const r = await runCommand(cmd, ["--version"], 10_000);
    if (r.ok) return { cmd, version: r.stdout.split("\n")[0].trim() };
  }
  return null;
}

/**
 * Compiles bench/limits.c into a private temporary directory and runs it (about 5 s). Throws
 * LibraryUnavailableError when no C compiler is installed, and ChoirError when the build or the run fails
 * or times out.
 */
export async function measureLimits(): Promise<MachineLimits> {
  const compiler = await findCompiler();
  if (!compiler) {
    throw new LibraryUnavailableError(
      "no C compiler found (tried cc, gcc, clang): install one, e.g. `apt-get install gcc` on Debian/Ubuntu",
      { op: "bench --limits" },
    );
  }
  const loadAvg1 = Deno.loadavg()[0];
  const dir = await Deno.makeTempDir({ prefix: "choir-limits-" });
  try {
    await Deno.chmod(dir, 0o700);
    const exe = `${dir}/limits`;
    const built = await runCommand(
      compiler.cmd,
      ["-O2", "-pthread", "-std=gnu11", "-o", exe, SOURCE],
      COMPILE_TIMEOUT_MS,
    );
    if (!built.ok) {
      throw new ChoirError(
        `${compiler.cmd} could not build ${SOURCE}${built.timedOut ? " (timed out)" : ""}:\n${built.stderr}`,
        { op: "bench --limits" },
      );
    }
    const ran = await runCommand(exe, [], RUN_TIMEOUT_MS);
    if (!ran.ok) {
      const why = ran.timedOut ? `timed out after ${RUN_TIMEOUT_MS / 1000} s` : "failed";
      throw new ChoirError(`bench/limits.c ${why}: ${ran.stderr.trim()}`, { op: "bench --limits" });
    }
    const line = ran.stdout.trim().split("\n").pop() ?? "";
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line);
    } catch (err) {
      throw new ChoirError(`bench/limits.c printed no JSON: ${line}`, { op: "bench --limits", cause: err });
    }
    const figures = {} as Record<(typeof MEASURED)[number], number>;
    for (const k of MEASURED) {
      const v = parsed[k];
      if (typeof v !== "number" || !Number.isFinite(v)) {
        throw new ChoirError(`bench/limits.c gave no number for ${k}: ${line}`, { op: "bench --limits" });
      }
      figures[k] = v;
    }
    return {
      ...figures,
      loadAvg1,
      cc: `${compiler.cmd}: ${compiler.version}`,
      date: new Date().toISOString(),
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** A short human table of `l`: one line per figure, with its unit and what it measures. */
export function limitsLines(l: MachineLimits): string[] {
  const f = (x: number, digits: number) => x.toFixed(digits).padStart(8);
  return [
    `machine limits (${l.cpus} cpus, load ${l.loadAvg1.toFixed(2)}, ${l.cc}, ${l.date})`,
    `  ${f(l.memcpyGBs1, 2)} GB/s  memcpy 64 MiB, one core`,
    `  ${f(l.memcpyGBs2, 2)} GB/s  memcpy 64 MiB, each of two cores at once (${
      l.memcpyGBs2Total.toFixed(2)
    } together)`,
    `  ${f(l.shmRttUs, 3)} us    shared-memory ping-pong round trip, 8 B, two processes (min ${
      l.shmRttUsMin.toFixed(3)
    })`,
    `  ${f(l.tcpRttUs, 2)} us    TCP loopback round trip, 8 B, blocking reads`,
    `  ${f(l.tcpRttUsPoll, 2)} us    TCP loopback round trip, 8 B, polling reads`,
    `  ${f(l.tcpGBs, 2)} GB/s  TCP loopback, one stream, 4 MiB writes`,
    `  ${f(l.tcpGBsBoth, 2)} GB/s  TCP loopback, both directions at once, each`,
  ];
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--json");
  const jsonFile = i >= 0 ? Deno.args[i + 1] : undefined;
  if (i >= 0 && !jsonFile) {
    console.error("usage: deno run --allow-all bench/limits.ts [--json FILE]");
    Deno.exit(2);
  }
  try {
    const l = await measureLimits();
    for (const line of limitsLines(l)) console.log(line);
    if (jsonFile) await Deno.writeTextFile(jsonFile, JSON.stringify(l, null, 2) + "\n");
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    Deno.exit(1);
  }
}
