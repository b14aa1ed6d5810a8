/**
 * @module
 * One benchmark row: check the op's result once on a known pattern, then time back-to-back
 * iterations on every rank. The per-iteration time is the slowest rank's; the row reports the median.
 */

import type { ProcessGroup } from "../collectives/mod.ts";

/** The ops `deno task bench` measures. */
export type BenchOp = "allreduce" | "broadcast" | "barrier";

/** One measured row, in nccl-tests' terms. */
export interface BenchRow {
  /** Op name. */
  op: BenchOp;
  /** Bytes of the buffer. */
  bytes: number;
  /** Elements of the buffer. */
  count: number;
  /** Element type. */
  type: string;
  /** Reduce op or "none". */
  redop: string;
  /** Root rank, or -1. */
  root: number;
  /** Ranks. */
  nranks: number;
  /** Median time per iteration, microseconds (slowest rank per iteration). */
  timeUs: number;
  /** 99th percentile time, microseconds. */
  p99Us: number;
  /** Timed iterations. */
  iters: number;
  /** bytes / time, GB/s. */
  algbw: number;
  /** algbw times the op's bus factor, GB/s. */
  busbw: number;
  /** Elements found wrong in the checks. */
  wrong: number;
  /** Transport. */
  transport: string;
}

/** nccl-tests' bus-bandwidth factor of an op over n ranks. */
export function busFactor(op: BenchOp, n: number): number {
  return op === "allreduce" ? (2 * (n - 1)) / n : 1;
}

/** Options of one measurement. */
export interface MeasureOptions {
  /** Seconds of timed iterations to aim for. */
  budgetS: number;
  /** Fewest timed iterations. */
  minIters: number;
  /** Most timed iterations. */
  maxIters: number;
  /** Allocate buffers with `pg.alloc` (shared memory) instead of ordinary arrays. */
  alloc?: boolean;
}

/** Milliseconds of untimed calls before each row's timed loop (JIT warm-up). */
const WARM_MS = 300;

/** Pattern value of element i on rank r (small integers, so sums are exact in f32). */
function pattern(r: number, i: number): number {
  return (r + 1) * ((i % 61) + 1);
}

/** Runs one op at one size on every rank; rank 0's return value carries the row. */
export async function measure(
  pg: ProcessGroup,
  op: BenchOp,
  bytes: number,
  o: MeasureOptions,
): Promise<BenchRow> {
  const n = pg.size;
  const count = op === "barrier" ? 0 : Math.max(1, Math.floor(bytes / 4));
  // --alloc: the buffer lives in symmetric shared memory (pg.alloc), so no copy in or out is needed.
  const buf = o.alloc && op !== "barrier"
    ? (await pg.alloc("f32", count)) as Float32Array
    : new Float32Array(count);
  let wrong = 0;

  // 1. Correctness on a known pattern.
  if (op === "allreduce") {
    for (let i = 0; i < count; i++) buf[i] = pattern(pg.rank, i);
    await pg.allReduce(buf);
    const tri = (n * (n + 1)) / 2;
    for (let i = 0; i < count; i++) if (buf[i] !== ((i % 61) + 1) * tri) wrong++;
    buf.fill(0); // repeated in-place sums of zeros cannot overflow
  } else if (op === "broadcast") {
    for (let i = 0; i < count; i++) buf[i] = pg.rank === 0 ? pattern(0, i) : -1;
    await pg.broadcast(buf, { root: 0 });
    for (let i = 0; i < count; i++) if (buf[i] !== pattern(0, i)) wrong++;
  }
  const once = () =>
    op === "allreduce"
      ? pg.allReduce(buf)
      : op === "broadcast"
      ? pg.broadcast(buf, { root: 0 })
      : pg.barrier();

  // 2. Warm up on this very op and size for about WARM_MS, so the JIT has compiled this path: rounds
  //    of calls until rank 0 says the time is up (every rank makes the same calls), then size the
  //    timed loop from rank 0's pace in the last round.
  const plan = new Float64Array(2);
  let batch = 5;
  const start = performance.now();
  while (true) {
    const t0 = performance.now();
    for (let k = 0; k < batch; k++) await once();
    const now = performance.now();
    plan[0] = (now - t0) / batch;
    plan[1] = now - start < WARM_MS ? 1 : 0;
    await pg.broadcast(plan, { root: 0 });
    if (plan[1] === 0) break;
    // Rounds of about 20 ms.
    batch = Math.max(1, Math.min(100_000, Math.round(20 / plan[0])));
  }
  const iters = Math.min(o.maxIters, Math.max(o.minIters, Math.round((o.budgetS * 1000) / plan[0])));

  // 3. Timed loop: iterations back to back, each timed on every rank.
  await pg.barrier();
  const times = new Float64Array(iters);
  for (let k = 0; k < iters; k++) {
    const t0 = performance.now();
    await once();
    times[k] = performance.now() - t0;
  }
  // 4. The data must still be right after the loop (zeros for allreduce, the pattern for broadcast).
  if (op === "allreduce") { for (let i = 0; i < count; i++) if (buf[i] !== 0) wrong++; }
  if (op === "broadcast") { for (let i = 0; i < count; i++) if (buf[i] !== pattern(0, i)) wrong++; }

  // 5. Slowest rank per iteration, and the total of wrong elements.
  const all = new Float64Array(iters * n);
  await pg.allGather(all, times);
  const per = new Float64Array(iters);
  for (let k = 0; k < iters; k++) {
    let m = 0;
    for (let r = 0; r < n; r++) m = Math.max(m, all[r * iters + k]);
    per[k] = m;
  }
  const w = new Float64Array([wrong]);
  await pg.allReduce(w);
  per.sort();
  const timeUs = per[Math.floor(iters / 2)] * 1000;
  const p99Us = per[Math.min(iters - 1, Math.floor(iters * 0.99))] * 1000;
  const realBytes = count * 4;
  const algbw = timeUs > 0 ? realBytes / timeUs / 1000 : 0;
  return {
    op,
    bytes: realBytes,
    count,
    type: "float",
    redop: op === "allreduce" ? "sum" : "none",
    root: op === "broadcast" ? 0 : -1,
    nranks: n,
    timeUs,
    p99Us,
    iters,
    algbw,
    busbw: algbw * busFactor(op, n),
    wrong: w[0],
    transport: pg.backend,
  };
}
