/**
 * @module
 * Test helper: starts N real rank processes (`Deno.execPath()` via `Deno.Command`) with the env://
 * contract, collects their output, and kills them all if they outlive a deadline.
 */

/** What one rank process left behind. */
export interface RankOutput {
  /** The rank. */
  rank: number;
  /** Exit code. */
  code: number;
  /** Everything it printed on stdout. */
  stdout: string;
  /** Everything it printed on stderr. */
  stderr: string;
}

/** A free TCP port on loopback (the listener is closed before returning). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Options of {@link runRanks}. */
export interface RunRanksOptions {
  /** Program to run (path relative to the repository root, or absolute). */
  script: string;
  /** Number of ranks in the job. */
  worldSize: number;
  /** Ranks to actually start (default: all). */
  ranks?: number[];
  /** Arguments for the program. */
  args?: string[];
  /** Extra env for every rank, or per rank. */
  env?: Record<string, string> | ((rank: number) => Record<string, string>);
  /** Kill everything after this many ms (default 120 s). */
  deadlineMs?: number;
}

const ROOT = new URL("../../", import.meta.url);

/** Starts the ranks and resolves when all have exited (or were killed at the deadline). */
export async function runRanks(opts: RunRanksOptions): Promise<RankOutput[]> {
  const port = freePort();
  const token = "test-token-" + crypto.randomUUID();
  const ranks = opts.ranks ?? Array.from({ length: opts.worldSize }, (_, i) => i);
  const script = new URL(opts.script, ROOT).pathname;
  const children = ranks.map((rank) => {
    const extra = typeof opts.env === "function" ? opts.env(rank) : opts.env ?? {};
    const cmd = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", script, ...(opts.args ?? [])],
      env: {
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: String(opts.worldSize),
        LOCAL_WORLD_SIZE: String(opts.worldSize),
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        CHOIR_TOKEN: token,
        NO_COLOR: "1",
        ...extra,
      },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    });
    return { rank, child: cmd.spawn() };
  });
  const timer = setTimeout(() => {
    for (const { child } of children) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
    }
  }, opts.deadlineMs ?? 120_000);
  try {
    return await Promise.all(children.map(async ({ rank, child }) => {
      const out = await child.output();
      const dec = new TextDecoder();
      return { rank, code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    }));
  } finally {
    clearTimeout(timer);
  }
}

/** Parses the `RESULT {json}` line a fixture prints. */
export function resultOf<T>(out: RankOutput): T {
  const line = out.stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) {
    throw new Error(`rank ${out.rank} printed no RESULT (exit ${out.code})\n${out.stdout}\n${out.stderr}`);
  }
  return JSON.parse(line.slice(7)) as T;
}
