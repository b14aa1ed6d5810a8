/**
 * @module
 * The launcher's command line: `[launcher options] PROGRAM [program args...]`, parsed with
 * `node:util` parseArgs; everything from PROGRAM on belongs to the program, untouched.
 */

import { parseArgs } from "node:util";
import { InvalidArgumentError } from "../errors.ts";
import { type CpuBind, parseCpuBind } from "../transports/cpu_bind.ts";

/** The launcher's usage text. */
export const USAGE = `usage: deno task launch [options] PROGRAM [ARGS...]

Runs this node's ranks of PROGRAM (torchrun-like). Standalone (no --rdzv-endpoint) it serves the
store itself; across nodes, run it once per node with the same --rdzv-endpoint and --rdzv-id.
PROGRAM ending in .ts/.js runs as \`deno run -A PROGRAM ARGS...\`; anything else is executed as is.

options:
  --nproc-per-node N        ranks to start on this node (default 1)
  --nnodes MIN:MAX | N      nodes the job runs with (default 1); one beyond MAX is refused
  --node-rank R             order of this node (GROUP_RANK); default: order of arrival
  --rdzv-endpoint HOST:PORT the store the nodes meet in (the node that can bind it serves it)
  --rdzv-id ID              the run id, the same on every node (TORCHELASTIC_RUN_ID); default:
                            a new one per launch, created by its first node in the store
  --rdzv-conf K=V,...       join_timeout=S (600), last_call_timeout=S (3), heartbeat_timeout=S (30)
  --standalone              one node, its own store on a free port (ignores --rdzv-endpoint)
  --max-restarts N          restart the workers after a failure up to N times (default 0)
  --restart-failed N        restart only a failed worker (same env), up to N times on this node,
                            while the others go on: for FtManager programs (docs/fault_tolerance.md)
  --monitor-interval S      how often workers and nodes are checked, in seconds (default 0.1)
  --log-dir DIR             also write rank N's output to DIR/run-HASH/round_R/rank_N.log
                            (HASH: of the run id; files 0600)
  --master-addr ADDR        standalone: address of the store server (default 127.0.0.1)
  --master-port PORT        standalone: port of the store server (default: a free port)
  --token-file FILE         read the job's secret from FILE (default: CHOIR_TOKEN, else random
                            standalone; across nodes every node needs the same one)
  --token TOKEN             the job's secret on the command line (visible to other users in ps:
                            prefer CHOIR_TOKEN or --token-file)
  --grace-ms MS             after SIGTERM, how long ranks get before SIGKILL (default 5000)
  --bind-to core|none       core: bind each rank's main thread to one CPU, the LOCAL_RANK-th this
                            node may use (as mpirun does); none: leave it to the kernel (default:
                            CHOIR_CPU_BIND, else none)
  -h, --help                print this help`;

/** The parsed command line. */
export interface LaunchArgs {
  /** `--nproc-per-node`. */
  nprocPerNode: number;
  /** `--nnodes`: MIN. */
  minNodes?: number;
  /** `--nnodes`: MAX. */
  maxNodes?: number;
  /** `--node-rank`. */
  nodeRank?: number;
  /** `--rdzv-endpoint`. */
  rdzvEndpoint?: string;
  /** `--rdzv-id`. */
  rdzvId?: string;
  /** `--standalone`. */
  standalone: boolean;
  /** `--max-restarts`. */
  maxRestarts?: number;
  /** `--restart-failed`. */
  restartFailed?: number;
  /** `--monitor-interval`, in ms. */
  monitorIntervalMs?: number;
  /** `--log-dir`. */
  logDir?: string;
  /** `--rdzv-conf join_timeout`, in ms. */
  joinTimeoutMs?: number;
  /** `--rdzv-conf last_call_timeout`, in ms. */
  lastCallMs?: number;
  /** `--rdzv-conf heartbeat_timeout`, in ms. */
  heartbeatTimeoutMs?: number;
  /** `--master-addr`. */
  masterAddr?: string;
  /** `--master-port`. */
  masterPort?: number;
  /** `--token`. */
  token?: string;
  /** `--token-file`. */
  tokenFile?: string;
  /** `--grace-ms`. */
  graceMs?: number;
  /** `--bind-to`. */
  bindTo?: CpuBind;
  /** `--help` was given. */
  help: boolean;
  /** The program to run (undefined only with --help). */
  program?: string;
  /** The program's arguments. */
  args: string[];
}

const VALUE_OPTIONS = [
  "nproc-per-node",
  "nnodes",
  "node-rank",
  "rdzv-endpoint",
  "rdzv-id",
  "rdzv-conf",
  "max-restarts",
  "restart-failed",
  "monitor-interval",
  "log-dir",
  "master-addr",
  "master-port",
  "token",
  "token-file",
  "grace-ms",
  "bind-to",
] as const;

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
        nnodes: { type: "string" },
        "node-rank": { type: "string" },
        "rdzv-endpoint": { type: "string" },
        "rdzv-id": { type: "string" },
        "rdzv-conf": { type: "string" },
        standalone: { type: "boolean" },
        "max-restarts": { type: "string" },
        "restart-failed": { type: "string" },
        "monitor-interval": { type: "string" },
        "log-dir": { type: "string" },
        "master-addr": { type: "string" },
        "master-port": { type: "string" },
        token: { type: "string" },
        "token-file": { type: "string" },
        "grace-ms": { type: "string" },
        "bind-to": { type: "string" },
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
  const tokenFile = values["token-file"] as string | undefined;
  if (tokenFile !== undefined && token !== undefined) {
    throw new InvalidArgumentError("give --token or --token-file, not both", { op });
  }
  const nodes = parseNnodes(values.nnodes as string | undefined);
  const conf = parseRdzvConf(values["rdzv-conf"] as string | undefined);
  const monitor = values["monitor-interval"] as string | undefined;
  const monitorS = monitor === undefined ? undefined : Number(monitor);
  if (monitorS !== undefined && !(monitorS > 0 && monitorS <= 3600)) {
    throw new InvalidArgumentError(`--monitor-interval must be seconds in (0, 3600], got ${monitor}`, { op });
  }
  return {
    nprocPerNode: int("nproc-per-node", 1, 4096) ?? 1,
    minNodes: nodes?.[0],
    maxNodes: nodes?.[1],
    nodeRank: int("node-rank", 0, 1_000_000),
    rdzvEndpoint: values["rdzv-endpoint"] as string | undefined,
    rdzvId: values["rdzv-id"] as string | undefined,
    standalone: values.standalone === true,
    maxRestarts: int("max-restarts", 0, 1_000_000),
    restartFailed: int("restart-failed", 0, 1_000_000),
    monitorIntervalMs: monitorS === undefined ? undefined : Math.round(monitorS * 1000),
    logDir: values["log-dir"] as string | undefined,
    joinTimeoutMs: conf.join_timeout,
    lastCallMs: conf.last_call_timeout,
    heartbeatTimeoutMs: conf.heartbeat_timeout,
    masterAddr: values["master-addr"] as string | undefined,
    masterPort: int("master-port", 0, 65535),
    token,
    tokenFile,
    graceMs: int("grace-ms", 0, 3_600_000),
    bindTo: parseCpuBind(values["bind-to"] as string | undefined, "--bind-to", op),
    help,
    program: rest[0],
    args: rest.slice(1),
  };
}

/** `--nnodes N` or `MIN:MAX` as [MIN, MAX]. */
function parseNnodes(raw: string | undefined): [number, number] | undefined {
  if (raw === undefined) return undefined;
  const m = raw.match(/^(\d+)(?::(\d+))?$/);
  const min = m ? Number(m[1]) : NaN;
  const max = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || min < 1 || max < min || max > 100_000) {
    throw new InvalidArgumentError(`--nnodes must be N or MIN:MAX with 1 <= MIN <= MAX, got ${raw}`, {
      op: "launch",
    });
  }
  return [min, max];
}

const RDZV_CONF = ["join_timeout", "last_call_timeout", "heartbeat_timeout"] as const;

/** `--rdzv-conf k=v,...` (seconds) into ms per known key. */
function parseRdzvConf(raw: string | undefined): Partial<Record<(typeof RDZV_CONF)[number], number>> {
  const out: Partial<Record<(typeof RDZV_CONF)[number], number>> = {};
  if (raw === undefined || raw === "") return out;
  for (const part of raw.split(",")) {
    const [k, v] = part.split("=", 2);
    const s = Number(v);
    if (!(RDZV_CONF as readonly string[]).includes(k) || v === undefined || !(s >= 0)) {
      throw new InvalidArgumentError(
        `--rdzv-conf takes ${RDZV_CONF.map((k) => `${k}=SECONDS`).join(",")}; got ${JSON.stringify(part)}`,
        { op: "launch" },
      );
    }
    out[k as (typeof RDZV_CONF)[number]] = Math.round(s * 1000);
  }
  return out;
}
