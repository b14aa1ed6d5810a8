/**
 * @module
 * The OSU Micro-Benchmarks layout: one section per op, dtype, reduce op and placement, headed
 * `# Size       Avg Latency(us)`, with OSU's `-f` extras (median, p99, min, CV, iterations) and
 * `#wrong` after it. Avg is the mean over iterations of the slowest rank's time.
 */

import { fmtPct, padL, padR, placeName, type RowSink, type WriteLine } from "./text.ts";

const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");

/** A sink that writes rows in the OSU layout. */
export function osuSink(write: WriteLine): RowSink {
  let section = "";
  return {
    row(r) {
      const key = `${r.series}/${r.op}/${r.dtype}/${r.redop}/${r.inPlace}`;
      if (key !== section) {
        if (section) write("");
        section = key;
        const what = [
          r.type !== "none" ? r.type : "",
          r.redop !== "none" ? r.redop : "",
          placeName(r.inPlace),
        ]
          .filter((s) => s !== "").join(" ");
        write(
          `# OSU-style ${r.op} latency test: ${r.series}, ${r.nranks} ranks, transport ${r.transport}, ${what}`,
        );
        write(
          `${padR("# Size", 10)}${padL("Avg Latency(us)", 18)}${padL("Median(us)", 13)}${
            padL("P99(us)", 13)
          }` +
            `${padL("Min(us)", 13)}${padL("CV(%)", 8)}${padL("Iterations", 12)}${padL("#wrong", 8)}`,
        );
      }
      if (r.unsupported) {
        write(`${padR(r.bytes, 10)}${padL("n/a", 18)}  # ${r.unsupported}`);
        return;
      }
      write(
        `${padR(r.bytes, 10)}${padL(f2(r.meanUs), 18)}${padL(f2(r.timeUs), 13)}${padL(f2(r.p99Us), 13)}` +
          `${padL(f2(r.minUs), 13)}${padL(fmtPct(r.cvPct), 8)}${padL(r.iters, 12)}${padL(r.wrong, 8)}`,
      );
    },
    end() {},
  };
}
