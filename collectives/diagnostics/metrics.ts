/**
 * @module
 * Operation metrics of a process group: per-op counters (calls, bytes, errors) and a latency
 * histogram on fixed log-scale buckets, rendered in the Prometheus text format. Serving the text is
 * status_server.ts's job; timing the calls is the caller's (FlightRecorder.end returns the duration).
 *
 * Integration (ProcessGroup):
 * - construct once per group: `new Metrics({ group, rank })`;
 * - when an operation settles: `metrics.record(call.name, tensor.byteLength, seconds, failed)`, with
 *   `seconds` what `FlightRecorder.end` returned (-1 = untimed: counted, not put in the histogram);
 * - for the status server: `metrics: () => metrics.text()`, or `prometheusText([...groups' metrics])`
 *   when one endpoint serves several groups (each metric family must appear once per exposition).
 */

/**
 * Upper bounds of the latency histogram buckets, in seconds: 1-2.5-5 steps from 1 us to 100 s
 * (a `+Inf` bucket follows).
 */
export const LATENCY_BUCKETS: readonly number[] = (() => {
  const out: number[] = [];
  for (let e = -6; e <= 2; e++) {
    for (const m of [1, 2.5, 5]) if (!(e === 2 && m > 1)) out.push(Number(`${m}e${e}`));
  }
  return out;
})();

/** Counters of one operation name. */
export interface OpCounters {
  /** Calls that finished (successfully or not). */
  calls: number;
  /** Bytes of the tensors of those calls. */
  bytes: number;
  /** Calls that failed. */
  errors: number;
  /** Successful timed calls, the histogram's observations. */
  timed: number;
  /** Sum of their latencies, in seconds. */
  seconds: number;
  /** Observations per bucket of {@link LATENCY_BUCKETS} plus `+Inf` (not cumulative). */
  buckets: number[];
}

/** Options of {@link Metrics}. */
export interface MetricsOptions {
  /** Group id, the `group` label (default 0). */
  group?: number;
  /** The rank, a `rank` label when given (for endpoints that serve several ranks). */
  rank?: number;
}

class OpStats {
  calls = 0;
  bytes = 0;
  errors = 0;
  timed = 0;
  seconds = 0;
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
}

/** Counters and latency histograms of one group's operations, cheap to update on every call. */
export class Metrics {
  /** Group id label. */
  readonly group: number;
  /** Rank label, if any. */
  readonly rank?: number;
  readonly #ops = new Map<string, OpStats>();

  /** Creates empty metrics. */
  constructor(opts: MetricsOptions = {}) {
    this.group = opts.group ?? 0;
    this.rank = opts.rank;
  }

  /**
   * Counts one finished call of `op` over `bytes` bytes; a successful one with `seconds >= 0` also
   * goes into the latency histogram (failed calls are counted as errors, not timed).
   */
  record(op: string, bytes: number, seconds: number, failed = false): void {
    let s = this.#ops.get(op);
    if (s === undefined) this.#ops.set(op, s = new OpStats());
    s.calls++;
    s.bytes += bytes;
    if (failed) {
      s.errors++;
      return;
    }
    if (!(seconds >= 0)) return;
    s.timed++;
    s.seconds += seconds;
    const b = s.buckets;
    const n = LATENCY_BUCKETS.length;
    let i = 0;
    while (i < n && seconds > LATENCY_BUCKETS[i]) i++;
    b[i]++;
  }

  /** The counters of every op seen so far (copies), by op name. */
  counters(): Record<string, OpCounters> {
    const out: Record<string, OpCounters> = {};
    for (const [op, s] of this.#ops) {
      out[op] = {
        calls: s.calls,
        bytes: s.bytes,
        errors: s.errors,
        timed: s.timed,
        seconds: s.seconds,
        buckets: Array.from(s.buckets),
      };
    }
    return out;
  }

  /** This group's metrics in the Prometheus text exposition format. */
  text(): string {
    return prometheusText([this]);
  }
}

const FAMILIES = [
  ["choir_ops_total", "counter", "Operations finished (successfully or not)."],
  ["choir_bytes_total", "counter", "Bytes of the tensors of finished operations."],
  ["choir_errors_total", "counter", "Operations that failed."],
  ["choir_op_latency_seconds", "histogram", "Latency of successful operations, in seconds."],
] as const;

/**
 * Renders the metrics of several groups (or ranks) as one Prometheus text exposition (format
 * 0.0.4), each metric family with one `# HELP` and `# TYPE` line.
 */
export function prometheusText(sources: readonly Metrics[]): string {
  const lines: string[] = [];
  for (const [name, type, help] of FAMILIES) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const m of sources) {
      const extra = `,group="${m.group}"${m.rank === undefined ? "" : `,rank="${m.rank}"`}`;
      for (const [op, c] of Object.entries(m.counters())) {
        const labels = `op="${escapeLabel(op)}"${extra}`;
        if (name === "choir_ops_total") lines.push(`${name}{${labels}} ${c.calls}`);
        else if (name === "choir_bytes_total") lines.push(`${name}{${labels}} ${c.bytes}`);
        else if (name === "choir_errors_total") lines.push(`${name}{${labels}} ${c.errors}`);
        else {
          let cumulative = 0;
          for (let i = 0; i <= LATENCY_BUCKETS.length; i++) {
            cumulative += c.buckets[i];
            const le = i < LATENCY_BUCKETS.length ? String(LATENCY_BUCKETS[i]) : "+Inf";
            lines.push(`${name}_bucket{${labels},le="${le}"} ${cumulative}`);
          }
          lines.push(`${name}_sum{${labels}} ${c.seconds}`, `${name}_count{${labels}} ${c.timed}`);
        }
      }
    }
  }
  return lines.join("\n") + "\n";
}

/** Escapes a label value: backslash, double quote and newline. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
