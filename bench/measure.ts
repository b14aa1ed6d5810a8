/**
 * @module
 * Times one prepared row on every rank: one checked call, a warm-up on this very op and size, then
 * back-to-back timed iterations of which a seeded sample (one in every 8, and the last) is checked:
 * before it every rank arms fresh data for it, after it every rank counts wrong elements; arming,
 * checking and the barriers around them are outside the timed region. Per iteration the slowest
 * rank's time counts; the row reports their median, mean, p99 and coefficient of variation, and the
 * wrong elements of all ranks. bench/compare/common.py measures the other libraries the same way.
 */

import type { ProcessGroup } from "../collectives/mod.ts";
import type { Prepared } from "./ops.ts";
import { summarize, type TimeStats } from "./stats.ts";
import { isChecked, seedOf } from "./values.ts";

/** Options of one measurement. */
export interface MeasureOptions {
  /** Seconds of timed iterations to aim for. */
  budgetS: number;
  /** Seconds of untimed warm-up calls before the timed loop (0.3 by default). */
  warmupS: number;
  /** Fewest timed iterations. */
  minIters: number;
  /** Most timed iterations. */
  maxIters: number;
  /** Spoil one checked element on rank 0 (testing aid for `#wrong`). */
  corrupt: boolean;
}

/** What a row measured, the same on every rank. */
export interface Measured extends TimeStats {
  /** Wrong elements found by the checks, summed over ranks. */
  wrong: number;
}

/** Runs row `row` on every rank (a collective: every rank calls it with the same row). */
export async function measure(
  pg: ProcessGroup,
  row: number,
  p: Prepared,
  o: MeasureOptions,
): Promise<Measured> {
  const n = pg.size;
  // 1. One checked call.
  const first = seedOf(row, 0);
  p.arm(first);
  await p.run();
  let wrong = p.verify(first, o.corrupt && pg.rank === 0);

  // 2. Warm up on this very op and size for about warmupS, so the JIT has compiled this path: rounds
  //    of calls until rank 0 says the time is up (every rank makes the same calls), then size the
  //    timed loop from rank 0's pace in the last round.
  const warmMs = o.warmupS * 1000;
  const plan = new Float64Array(2);
  let batch = 5;
  const start = performance.now();
  while (true) {
    const t0 = performance.now();
    for (let k = 0; k < batch; k++) await p.run();
    const now = performance.now();
    plan[0] = (now - t0) / batch;
    plan[1] = now - start < warmMs ? 1 : 0;
    await pg.broadcast(plan, { root: 0 });
    if (plan[1] === 0) break;
    // Rounds of about 20 ms.
    batch = Math.max(1, Math.min(100_000, Math.round(20 / plan[0])));
  }
  const iters = Math.min(o.maxIters, Math.max(o.minIters, Math.round((o.budgetS * 1000) / plan[0])));

  // 3. Timed loop: iterations back to back, each timed on every rank; the sampled ones armed before
  //    and checked after, untimed, with a barrier after each so the next timed call starts aligned.
  await pg.barrier();
  const times = new Float64Array(iters);
  for (let k = 0; k < iters; k++) {
    const checked = isChecked(row, k, iters);
    const seed = seedOf(row, k + 1);
    if (checked) {
      p.arm(seed);
      await pg.barrier();
    }
    const t0 = performance.now();
    await p.run();
    times[k] = performance.now() - t0;
    if (checked) {
      wrong += p.verify(seed, false);
      await pg.barrier();
    }
  }

  // 4. Slowest rank per iteration, and the wrong elements of all ranks.
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
  return { ...summarize(per), wrong: w[0] };
}
