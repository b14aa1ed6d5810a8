/**
 * @module
 * {@link LocalWorkers}: one node's worker processes for one round: spawns them with their env, streams
 * their output, and when one fails (or `stop()` is called) stops the others: SIGTERM, then SIGKILL after a
 * grace period. With `restartFailed` a failed worker is restarted alone instead, while the others go on.
 * Deciding what to do next (restart, give up) is the agent's job.
 */

import { InvalidArgumentError } from "../../errors.ts";
import type { OutputStream } from "../output.ts";

/** How one worker ended. */
export interface RankExit {
  /** Its global rank. */
  rank: number;
  /** Its exit code (128 + signal number when killed by a signal). */
  code: number;
  /** The signal that killed it, or null. */
  signal: Deno.Signal | null;
}

/** What {@link LocalWorkers} needs to start. */
export interface LocalWorkersSpec {
  /** The program: a .ts/.js file runs under `deno run`, anything else is executed directly. */
  program: string;
  /** Its arguments. */
  args: string[];
  /** Flags of `deno run` for .ts/.js programs. */
  denoFlags: string[];
  /** Global ranks of the local workers, in local-rank order. */
  ranks: number[];
  /** The env of local worker `localRank`. */
  envOf: (localRank: number) => Record<string, string>;
  /** After SIGTERM, how long workers get before SIGKILL, in ms. */
  graceMs: number;
  /** Receives each chunk of complete lines of a worker. */
  onLines: (rank: number, stream: OutputStream, lines: string[]) => void;
  /** Receives the group's own messages. */
  log: (message: string) => void;
  /** Reads a stream to its end, calling back with complete lines (output.ts's splitLines). */
  splitLines: (stream: ReadableStream<Uint8Array>, onLines: (lines: string[]) => void) => Promise<void>;
  /**
   * Failed workers this node restarts on their own, with the same env, while the others go on
   * (`--restart-failed`; default 0: a failure stops them all). For fault-tolerant jobs (FtManager).
   */
  restartFailed?: number;
}

/** The outcome of a round on this node. */
export interface GroupResult {
  /** Every started worker's exit, in local-rank order. */
  ranks: RankExit[];
  /** The first worker that failed on its own (not one stopped by the group), if any. */
  failed?: RankExit;
  /** The signal `stop()` sent, if the group was stopped from outside. */
  stoppedBy?: Deno.Signal;
  /** Failed workers restarted on their own (`restartFailed`). */
  restarted: number;
}

const SCRIPT = /\.(ts|mts|tsx|js|mjs|jsx)$/;

/** The elastic agent's worker processes on this node for one round (not the Worker-thread `WorkerGroup`). */
export class LocalWorkers {
  /** Resolves when every worker has exited and its output is drained. */
  readonly done: Promise<GroupResult>;
  /** Resolves with the first worker failure (never rejects; stays pending when none fails). */
  readonly firstFailure: Promise<RankExit>;
  readonly #spec: LocalWorkersSpec;
  readonly #children: Deno.ChildProcess[] = [];
  readonly #running = new Set<number>();
  #failed?: RankExit;
  #stoppedBy?: Deno.Signal;
  #killTimer?: ReturnType<typeof setTimeout>;
  #onFailure!: (exit: RankExit) => void;
  #restarted = 0;

  /** Starts every worker; throws InvalidArgumentError (after stopping those started) when one cannot start. */
  constructor(spec: LocalWorkersSpec) {
    this.#spec = spec;
    this.firstFailure = new Promise((resolve) => this.#onFailure = resolve);
    const exits: Promise<RankExit>[] = [];
    for (let local = 0; local < spec.ranks.length; local++) {
      const rank = spec.ranks[local];
      let child: Deno.ChildProcess;
      try {
        child = spawn(spec, spec.envOf(local));
      } catch (err) {
        this.stop("SIGKILL");
        const why = err instanceof Error ? err.message : String(err);
        throw new InvalidArgumentError(`cannot start rank ${rank} (${spec.program}): ${why}`, {
          rank,
          op: "launch",
          cause: err,
        });
      }
      this.#children.push(child);
      this.#running.add(local);
      exits.push(this.#watch(local, rank, child));
      if (this.#failed !== undefined) break;
    }
    this.done = Promise.all(exits).then((ranks) => {
      if (this.#killTimer !== undefined) clearTimeout(this.#killTimer);
      return { ranks, failed: this.#failed, stoppedBy: this.#stoppedBy, restarted: this.#restarted };
    });
  }

  /** Global ranks of the workers still running. */
  get running(): number[] {
    return [...this.#running].map((l) => this.#spec.ranks[l]);
  }

  /** Stops every worker still running with `sig`, then SIGKILL after the grace period. Idempotent. */
  stop(sig: Deno.Signal = "SIGTERM"): void {
    this.#stoppedBy ??= sig;
    this.#signalAll(sig);
    this.#armKill(sig);
  }

  #signalAll(sig: Deno.Signal): void {
    for (const local of this.#running) {
      try {
        this.#children[local].kill(sig);
      } catch {
        // It exited in between.
      }
    }
  }

  #armKill(sig: Deno.Signal): void {
    if (sig === "SIGKILL" || this.#running.size === 0) return;
    this.#killTimer ??= setTimeout(() => {
      if (this.#running.size > 0) {
        this.#spec.log(`ranks ${this.running.join(", ")} ignored ${sig}; sending SIGKILL`);
      }
      this.#signalAll("SIGKILL");
    }, this.#spec.graceMs);
  }

  async #watch(local: number, rank: number, first: Deno.ChildProcess): Promise<RankExit> {
    const spec = this.#spec;
    let child = first;
    const drains: Promise<unknown>[] = [];
    let status: Deno.CommandStatus;
    for (;;) {
      drains.push(Promise.all([
        spec.splitLines(child.stdout, (lines) => spec.onLines(rank, "stdout", lines)),
        spec.splitLines(child.stderr, (lines) => spec.onLines(rank, "stderr", lines)),
      ]));
      status = await child.status;
      const max = spec.restartFailed ?? 0;
      if (
        status.success || this.#stoppedBy !== undefined || this.#failed !== undefined ||
        this.#restarted >= max
      ) {
        break;
      }
      // Restart only this worker, same env; its peers go on and admit it at a step boundary.
      this.#restarted++;
      const why = describeExit({ code: status.code, signal: status.signal });
      spec.log(`rank ${rank} ${why}; restarting only it (restart ${this.#restarted} of ${max})`);
      try {
        child = spawn(spec, spec.envOf(local));
      } catch (err) {
        spec.log(`cannot restart rank ${rank}: ${err instanceof Error ? err.message : String(err)}`);
        break;
      }
      this.#children[local] = child;
      if (this.#stoppedBy !== undefined) child.kill(this.#stoppedBy); // stop() came in between
    }
    const pipes = Promise.all(drains);
    this.#running.delete(local);
    if (this.#running.size === 0 && this.#killTimer !== undefined) clearTimeout(this.#killTimer);
    const exit: RankExit = { rank, code: status.code, signal: status.signal };
    if (!status.success && this.#failed === undefined && this.#stoppedBy === undefined) {
      this.#failed = exit;
      const others = this.running;
      const tail = others.length > 0
        ? `; stopping rank${others.length > 1 ? "s" : ""} ${others.join(", ")}`
        : "";
      spec.log(`rank ${rank} ${describeExit(exit)}${tail}`);
      this.#signalAll("SIGTERM");
      this.#armKill("SIGTERM");
      this.#onFailure(exit);
    }
    await pipes;
    return exit;
  }
}

/** "exited with code 3" or "was killed by SIGKILL (exit code 137)". */
export function describeExit(exit: { code: number; signal: Deno.Signal | null }): string {
  return exit.signal !== null
    ? `was killed by ${exit.signal} (exit code ${exit.code})`
    : `exited with code ${exit.code}`;
}

function spawn(spec: LocalWorkersSpec, env: Record<string, string>): Deno.ChildProcess {
  const [cmd, argv] = SCRIPT.test(spec.program)
    ? [Deno.execPath(), ["run", ...spec.denoFlags, spec.program, ...spec.args]]
    : [spec.program, spec.args];
  return new Deno.Command(cmd, { args: argv, env, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
}
