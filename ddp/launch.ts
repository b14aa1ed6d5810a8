/**
 * @module
 * The launcher (torchrun-like): runs the store server, starts N ranks of a program with the rendezvous
 * env, prefixes their output with `[rank N] `, and stops them all when one fails. CLI and `launch()`.
 */

import { type ChoirEnv, readEnv } from "../config.ts";
import { InvalidArgumentError } from "../errors.ts";
import { jobTag } from "../transports/shm/segment.ts";
import { startStoreServer, type StoreServer } from "../transports/store/mod.ts";
import { parseLaunchArgs, USAGE } from "./launch_args.ts";
import { type OutputStream, splitLines, writePrefixed } from "./launch_output.ts";

export type { OutputStream };

/** Options of {@link launch}. */
export interface LaunchOptions {
  /** The program: a .ts/.js file runs under `deno run`, anything else is executed directly. */
  program: string;
  /** Arguments given to every rank's program. */
  args?: string[];
  /** Number of ranks to start on this host. */
  nprocPerNode: number;
  /** Address of the store server, given to ranks as MASTER_ADDR (default "127.0.0.1"). */
  masterAddr?: string;
  /** Port of the store server; 0 or absent picks a free one. */
  masterPort?: number;
  /** The job's secret (CHOIR_TOKEN); default 32 random bytes, hex. */
  token?: string;
  /** Extra environment variables for every rank. */
  env?: Record<string, string>;
  /** Flags of `deno run` for .ts/.js programs (default `["-A"]`). */
  denoFlags?: string[];
  /** After SIGTERM, how long ranks get to exit before SIGKILL, in ms (default 5000). */
  graceMs?: number;
  /** Receives each line of each rank's output; default: written `[rank N] `-prefixed to ours. */
  onOutput?: (rank: number, stream: OutputStream, line: string) => void;
  /** Receives the launcher's own messages; default: written to stderr as `launch: ...`. */
  log?: (message: string) => void;
  /** Forward SIGINT/SIGTERM received by this process to the ranks (the CLI does). */
  forwardSignals?: boolean;
  /** Aborting it stops every rank (SIGTERM, then SIGKILL after `graceMs`). */
  signal?: AbortSignal;
  /** This process's env, to keep a GLIBC_TUNABLES already set (default: `readEnv()`). */
  parentEnv?: ChoirEnv;
}

/** How one rank ended. */
export interface RankExit {
  /** The rank. */
  rank: number;
  /** Its exit code (128 + signal number when killed by a signal). */
  code: number;
  /** The signal that killed it, or null. */
  signal: Deno.Signal | null;
}

/** How the job ended. */
export interface LaunchResult {
  /** 0 when every rank exited 0; else the failed rank's code (>= 1), or 128 + a forwarded signal. */
  code: number;
  /** The exit of every rank started, in rank order. */
  ranks: RankExit[];
  /** The first rank that failed on its own (not one the launcher stopped), if any. */
  failed?: RankExit;
  /** The port the store server listened on. */
  masterPort: number;
}

/** Non-temporal copies for large memcpy (see design.md); set for ranks unless already set. */
export const GLIBC_TUNABLES_DEFAULT = "glibc.cpu.x86_non_temporal_threshold=0x100000";

const SCRIPT = /\.(ts|mts|tsx|js|mjs|jsx)$/;

/**
 * Runs `nprocPerNode` ranks of `program` against a store server started here, and resolves when all
 * have exited. When a rank fails, the others get SIGTERM, then SIGKILL after `graceMs`.
 */
export async function launch(opts: LaunchOptions): Promise<LaunchResult> {
  const op = "launch";
  opts.signal?.throwIfAborted();
  const n = opts.nprocPerNode;
  if (!Number.isInteger(n) || n < 1) {
    throw new InvalidArgumentError(`nprocPerNode must be a positive integer, got ${n}`, { op });
  }
  const log = opts.log ?? ((m: string) => console.error(`launch: ${m}`));
  const onOutput = opts.onOutput;
  const onLines = onOutput === undefined
    ? writePrefixed
    : (rank: number, stream: OutputStream, lines: string[]) =>
      lines.forEach((l) => onOutput(rank, stream, l));
  const graceMs = opts.graceMs ?? 5000;
  const masterAddr = opts.masterAddr ?? "127.0.0.1";
  const token = opts.token ?? randomToken();
  const jobId = opts.env?.CHOIR_JOB_ID ?? `j${randomToken().slice(0, 12)}`;
  const server = await startStoreServer({ hostname: masterAddr, port: opts.masterPort ?? 0, token });
  try {
    const env = { ...rankEnvBase(opts, masterAddr, server, token), CHOIR_JOB_ID: jobId };
    return await runRanks(opts, env, { n, graceMs, log, onLines, masterPort: server.port });
  } finally {
    // Ranks unlink their segments once every peer has mapped them; one killed in between leaves
    // its name behind. Every name of the job carries its id, so nothing can outlive the job.
    const swept = await sweepSharedMemory(jobId);
    if (swept > 0) log(`removed ${swept} shared-memory segment(s) left behind by ranks that died`);
    await server.close();
  }
}

interface RunCtx {
  n: number;
  graceMs: number;
  log: (m: string) => void;
  onLines: (rank: number, stream: OutputStream, lines: string[]) => void;
  masterPort: number;
}

async function runRanks(
  opts: LaunchOptions,
  env: Record<string, string>,
  ctx: RunCtx,
): Promise<LaunchResult> {
  const children: Deno.ChildProcess[] = [];
  const running = new Set<number>();
  let failed: RankExit | undefined;
  let stopSignal: Deno.Signal | undefined;
  let killTimer: ReturnType<typeof setTimeout> | undefined;

  const signalAll = (sig: Deno.Signal) => {
    for (const r of running) {
      try {
        children[r].kill(sig);
      } catch {
        // It exited in between.
      }
    }
  };
  const stopAll = (sig: Deno.Signal) => {
    signalAll(sig);
    killTimer ??= setTimeout(() => {
      if (running.size > 0) ctx.log(`ranks ${[...running].join(", ")} ignored ${sig}; sending SIGKILL`);
      signalAll("SIGKILL");
    }, ctx.graceMs);
  };
  const onSignal = (sig: "SIGINT" | "SIGTERM") => () => {
    stopSignal ??= sig;
    stopAll(sig);
  };
  const onInt = onSignal("SIGINT");
  const onTerm = onSignal("SIGTERM");
  const onAbort = () => {
    stopSignal ??= "SIGTERM";
    stopAll("SIGTERM");
  };

  if (opts.forwardSignals) {
    Deno.addSignalListener("SIGINT", onInt);
    Deno.addSignalListener("SIGTERM", onTerm);
  }
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  const exits: Promise<RankExit>[] = [];
  try {
    for (let rank = 0; rank < ctx.n; rank++) {
      let child: Deno.ChildProcess;
      try {
        child = spawnRank(opts, { ...env, RANK: String(rank), LOCAL_RANK: String(rank) });
      } catch (err) {
        stopAll("SIGTERM");
        await Promise.allSettled(exits);
        const why = err instanceof Error ? err.message : String(err);
        throw new InvalidArgumentError(`cannot start rank ${rank} (${opts.program}): ${why}`, {
          rank,
          op: "launch",
          cause: err,
        });
      }
      children.push(child);
      running.add(rank);
      const pipes = Promise.all([
        splitLines(child.stdout, (lines) => ctx.onLines(rank, "stdout", lines)),
        splitLines(child.stderr, (lines) => ctx.onLines(rank, "stderr", lines)),
      ]);
      exits.push(
        child.status.then(async (status) => {
          running.delete(rank);
          const exit: RankExit = { rank, code: status.code, signal: status.signal };
          if (!status.success && failed === undefined && stopSignal === undefined) {
            failed = exit;
            const others = [...running];
            const tail = others.length > 0
              ? `; stopping rank${others.length > 1 ? "s" : ""} ${others.join(", ")}`
              : "";
            ctx.log(`rank ${rank} ${describe(exit)}${tail}`);
            stopAll("SIGTERM");
          }
          await pipes;
          return exit;
        }),
      );
      if (failed !== undefined || stopSignal !== undefined) break;
    }
    const ranks = await Promise.all(exits);
    const code = failed !== undefined
      ? Math.max(1, failed.code)
      : stopSignal !== undefined
      ? 128 + (stopSignal === "SIGINT" ? 2 : 15)
      : ranks.find((r) => r.code !== 0)?.code ?? 0;
    return { code, ranks, failed, masterPort: ctx.masterPort };
  } finally {
    if (killTimer !== undefined) clearTimeout(killTimer);
    opts.signal?.removeEventListener("abort", onAbort);
    if (opts.forwardSignals) {
      Deno.removeSignalListener("SIGINT", onInt);
      Deno.removeSignalListener("SIGTERM", onTerm);
    }
  }
}

function spawnRank(opts: LaunchOptions, env: Record<string, string>): Deno.ChildProcess {
  const args = opts.args ?? [];
  const [cmd, argv] = SCRIPT.test(opts.program)
    ? [Deno.execPath(), ["run", ...(opts.denoFlags ?? ["-A"]), opts.program, ...args]]
    : [opts.program, args];
  return new Deno.Command(cmd, { args: argv, env, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
}

function rankEnvBase(
  opts: LaunchOptions,
  masterAddr: string,
  server: StoreServer,
  token: string,
): Record<string, string> {
  const parent = opts.parentEnv ?? readEnv();
  const env: Record<string, string> = {};
  if (parent.glibcTunables === undefined && opts.env?.GLIBC_TUNABLES === undefined) {
    env.GLIBC_TUNABLES = GLIBC_TUNABLES_DEFAULT;
  }
  return {
    ...env,
    ...opts.env,
    WORLD_SIZE: String(opts.nprocPerNode),
    LOCAL_WORLD_SIZE: String(opts.nprocPerNode),
    MASTER_ADDR: masterAddr,
    MASTER_PORT: String(server.port),
    CHOIR_TOKEN: token,
    CHOIR_STORE_EXTERNAL: "1",
  };
}

/** Removes /dev/shm entries of job `jobId`; returns how many there were. */
async function sweepSharedMemory(jobId: string): Promise<number> {
  const prefix = `choir-${jobTag(jobId)}`;
  let removed = 0;
  try {
    for await (const e of Deno.readDir("/dev/shm")) {
      if (!e.name.startsWith(prefix)) continue;
      try {
        await Deno.remove(`/dev/shm/${e.name}`);
        removed++;
      } catch {
        // Gone already (a rank unlinked it just now).
      }
    }
  } catch {
    // No /dev/shm here (not Linux): nothing to sweep.
  }
  return removed;
}

function describe(exit: RankExit): string {
  return exit.signal !== null
    ? `was killed by ${exit.signal} (exit code ${exit.code})`
    : `exited with code ${exit.code}`;
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The CLI: parses `argv`, runs the job with signal forwarding, and returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseLaunchArgs(argv);
  } catch (err) {
    console.error(`launch: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    const result = await launch({
      program: parsed.program!,
      args: parsed.args,
      nprocPerNode: parsed.nprocPerNode,
      masterAddr: parsed.masterAddr,
      masterPort: parsed.masterPort,
      token: parsed.token,
      graceMs: parsed.graceMs,
      forwardSignals: true,
    });
    if (result.failed !== undefined) {
      console.error(`launch: job failed: rank ${result.failed.rank} ${describe(result.failed)}`);
    }
    return result.code;
  } catch (err) {
    console.error(`launch: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
