/**
 * @module
 * What the per-layer budgets of one small allReduce (layer_budget.ts over shared memory, tcp_budget.ts
 * over TCP) share: the job's rendezvous, a monitor that records nothing, and the loop that times each
 * variant of the call path in step on every rank.
 */

import { readEnv } from "../config.ts";
import type { Call } from "../collectives/comm.ts";
import type { OpMonitor } from "../collectives/diagnostics/op_monitor.ts";
import { PrefixStore } from "../transports/store/prefix_store.ts";
import { createStore } from "../transports/store/rendezvous.ts";

/** Timeout of every wait of a budget run. */
export const BUDGET_TIMEOUT_MS = 60_000;

/** One step of the path: runs one call (a promise when it did not complete at once). */
export type Step = (x: Float32Array) => Promise<void> | undefined | void;

/** A monitor that records nothing (the variants that leave the monitor out). */
export const noMonitor = {
  begin: () => -1,
  end: () => {},
  failed: (_c: Call, e: Error) => Promise.resolve(e),
  close: () => {},
} as unknown as OpMonitor;

/** The job of local ranks (env://) the budget runs in. */
export function budgetJob(): ReturnType<typeof createStore> {
  return createStore("env://", { env: readEnv(), timeoutMs: BUDGET_TIMEOUT_MS });
}

/** What a transport's `create` takes, as the budgets pass it. */
export interface BudgetTransportOptions {
  /** This rank. */
  rank: number;
  /** Ranks in the job. */
  size: number;
  /** The job's store, prefixed per transport. */
  store: PrefixStore;
  /** The job's token. */
  token: string;
  /** Every wait's timeout. */
  timeoutMs: number;
  /** The transport's group number (900 and up). */
  group: number;
}

/**
 * A maker of fresh transports for the variants, each on its own store prefix and group number (so each
 * has its own links or segment and counters).
 */
export function transportMaker<T>(
  job: Awaited<ReturnType<typeof createStore>>,
  prefix: string,
  create: (o: BudgetTransportOptions) => Promise<T>,
): () => Promise<T> {
  let made = 0;
  return () => {
    const i = made++;
    const { rank, worldSize: size, store, token } = job;
    return create({
      rank,
      size,
      store: new PrefixStore(`${prefix}${i}/`, store),
      token,
      timeoutMs: BUDGET_TIMEOUT_MS,
      group: 900 + i,
    });
  };
}

/** Microseconds per call of `n` calls of `step` on `x` (every rank runs them in step). */
export async function timeStep(step: Step, x: Float32Array, n: number): Promise<number> {
  const t0 = performance.now();
  let p: Promise<void> | undefined | void;
  for (let i = 0; i < n; i++) {
    p = step(x);
    if (p) await p;
  }
  return ((performance.now() - t0) * 1000) / n;
}

/**
 * Times every variant at every size, `reps` times (after a warm-up each time): microseconds per call,
 * keyed `bytes\tname`. `fill` is the inputs' value.
 */
export async function timeVariants(
  all: readonly [string, Step][],
  sizes: readonly number[],
  calls: number,
  reps: number,
  fill = 0,
): Promise<Map<string, number[]>> {
  const results = new Map<string, number[]>();
  for (let rep = 0; rep < reps; rep++) {
    for (const bytes of sizes) {
      const x = new Float32Array(bytes / 4).fill(fill);
      for (const [name, step] of all) {
        await timeStep(step, x, Math.min(2000, calls / 10)); // warm-up
        const us = await timeStep(step, x, calls);
        const key = `${bytes}\t${name}`;
        results.set(key, [...(results.get(key) ?? []), us]);
      }
    }
  }
  return results;
}
