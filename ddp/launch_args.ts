/**
 * @module
 * The launcher's command line: `[launcher options] PROGRAM [program args...]`, parsed with
 * `node:util` parseArgs; everything from PROGRAM on belongs to the program, untouched.
 */

import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../errors.ts";

/** The launcher's usage text. */
export const USAGE = `usage: deno task launch [options] PROGRAM [ARGS...]

Starts N ranks of PROGRAM on this host (torchrun-like) with a shared store server.
PROGRAM ending in .ts/.js runs as \`deno run -A PROGRAM ARGS...\`; anything else is executed as is.

options:
  --nproc-per-node N   number of ranks to start (default 1)
  --master-addr ADDR   address of the store server (default 127.0.0.1)
  --master-port PORT   port of the store server (default: a free port)
  --token TOKEN        the job's secret (default: 32 random bytes, hex)
  --grace-ms MS        after SIGTERM, how long ranks get before SIGKILL (default 5000)
  -h, --help           print this help`;

/** The parsed command line. */
export interface LaunchArgs {
  /** `--nproc-per-node`. */
  nprocPerNode: number;
  /** `--master-addr`. */
  masterAddr?: string;
  /** `--master-port`. */
  masterPort?: number;
  /** `--token`. */
  token?: string;
  /** `--grace-ms`. */
  graceMs?: number;
  /** `--help` was given. */
  help: boolean;
  /** The program to run (undefined only with --help). */
  program?: string;
  /** The program's arguments. */
  args: string[];
}

const VALUE_OPTIONS = ["nproc-per-node", "master-addr", "master-port", "token", "grace-ms"] as const;

/** Parses the launcher's argv; throws InvalidArgumentError with a one-line reason for bad input. */
export function parseLaunchArgs(argv: readonly string[]): LaunchArgs {
  const op = "launch";
  // Options come before PROGRAM: find where they end, so program flags are never taken as ours.
  let i = 0;
  while (i < argv.length && argv[i].startsWith("-") && argv[i] !== "-") {
    if (argv[i] === "--") break;
    const name = argv[i].replace(/^--?/, "");
    i += name.includes("=") || !(VALUE_OPTIONS as readonly string[]).includes(name) ? 1 : 2;
  }
  const ours = argv.slice(0, Math.min(i, argv.length));
  const rest = argv[i] === "--" ? argv.slice(i + 1) : argv.slice(i);
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...ours],
      options: {
        "nproc-per-node": { type: "string" },
        "master-addr": { type: "string" },
        "master-port": { type: "string" },
        token: { type: "string" },
        "grace-ms": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new InvalidArgumentError(err instanceof Error ? err.message : String(err), { op });
  }
  const int = (name: string, min: number, max: number): number | undefined => {
    const raw = values[name];
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`--${name} must be an integer in [${min}, ${max}], got ${raw}`, { op });
    }
    return n;
  };
  const help = values.help === true;
  if (!help && rest.length === 0) throw new InvalidArgumentError("no PROGRAM given", { op });
  const token = values.token as string | undefined;
  if (token === "") throw new InvalidArgumentError("--token must not be empty", { op });
  return {
    nprocPerNode: int("nproc-per-node", 1, 4096) ?? 1,
    masterAddr: values["master-addr"] as string | undefined,
    masterPort: int("master-port", 0, 65535),
    token,
    graceMs: int("grace-ms", 0, 3_600_000),
    help,
    program: rest[0],
    args: rest.slice(1),
  };
}
