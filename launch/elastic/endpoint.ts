/**
 * @module
 * What the agents of one launch agree on through the endpoint's store besides rounds: the store's
 * instance (a random id the first agent writes into a fresh store, so that a store replaced under a
 * running job is a StoreError, not a silent start from scratch) and the default run id (without
 * `--rdzv-id`: created by the first agent of a launch, kept alive by its agents' beats, released by the
 * last one to exit). Rounds are rendezvous.ts's; when to check is the agent's.
 */

import { AbortedError, StoreError } from "../../errors.ts";
import type { Store } from "../../transports/store/mod.ts";
import { generateToken } from "../../transports/token.ts";
import { type Clock, monotonicClock } from "./liveness.ts";

/** The (unprefixed) key holding the store's instance id; ElasticState checks it too. */
export const STORE_INSTANCE_KEY = "choir/store-instance";

/** The (unprefixed) key holding the run id of the launch without `--rdzv-id` now using the endpoint. */
export const DEFAULT_RUN_KEY = "choir/default-run";

/** The value of {@link DEFAULT_RUN_KEY} once its run has ended (a compare-and-set can replace it). */
const RELEASED = "-";

const dec = new TextDecoder();

/** The key every agent of run `runId` adds 1 to while it lives (see {@link RunBeat}). */
export function runBeatKey(runId: string): string {
  return `choir/${runId}/alive`;
}

/**
 * Returns the store's instance id, creating one (random) when the store has none: the agent serving a
 * fresh store does so first, before any other can reach it.
 */
export async function claimStoreInstance(store: Store): Promise<string> {
  return dec.decode(await store.compareSet(STORE_INSTANCE_KEY, "", generateToken().slice(0, 16)));
}

/**
 * Throws StoreError when the store no longer holds instance `expected`: it was replaced (restarted)
 * under the job, and with it every round and ElasticState commit. An unreachable store is a StoreError
 * of the store call itself.
 */
export async function verifyStoreInstance(
  store: Store,
  expected: string,
  where: string,
  ctx: { rank?: number; op: string },
): Promise<void> {
  // One request: a compare-and-set that changes nothing returns what the key holds ("" when absent).
  const found = dec.decode(await store.compareSet(STORE_INSTANCE_KEY, expected, expected));
  if (found === expected) return;
  throw new StoreError(
    `the store at ${where} was replaced: it holds ${
      found === "" ? "no instance id" : `instance ${found}`
    } instead of ${expected}, so the rounds and ElasticState commits it held are lost; start the job ` +
      `again on every node`,
    ctx,
  );
}

/** Options of {@link claimDefaultRunId}. */
export interface ClaimOptions {
  /** A run whose beat counter stands still this long has died and is replaced, in ms. */
  heartbeatTimeoutMs: number;
  /** Poll period while watching a run's beats, in ms. */
  pollMs: number;
  /** The clock windows are measured on (default monotonic). */
  clock?: Clock;
  /** Receives progress messages. */
  log?: (message: string) => void;
  /** Aborting it ends the wait with an AbortedError. */
  signal?: AbortSignal;
}

/**
 * The run id of a launch without `--rdzv-id`: the one in {@link DEFAULT_RUN_KEY} while its agents beat
 * (this node is one more node of that launch), else a fresh random one this agent creates there with a
 * compare-and-set (the first agent of a new launch). A run whose beats stood still for
 * `heartbeatTimeoutMs` (its agents died without releasing it) is replaced.
 */
export async function claimDefaultRunId(store: Store, o: ClaimOptions): Promise<string> {
  const clock = o.clock ?? monotonicClock;
  const mine = `r${generateToken().slice(0, 16)}`;
  const stopped = (cur: string) =>
    new AbortedError(`stopped while agreeing on the run id (run "${cur}" on the endpoint)`, {
      op: "rendezvous",
    });
  for (;;) {
    if (o.signal?.aborted) throw stopped("");
    let cur = dec.decode(await store.compareSet(DEFAULT_RUN_KEY, "", mine));
    if (cur === RELEASED) cur = dec.decode(await store.compareSet(DEFAULT_RUN_KEY, RELEASED, mine));
    if (cur === mine) return mine;
    if (cur === RELEASED || cur === "") continue;
    const beat = runBeatKey(cur);
    const first = await store.add(beat, 0);
    const end = clock.now() + o.heartbeatTimeoutMs;
    let alive = false;
    while (clock.now() < end) {
      if (o.signal?.aborted) throw stopped(cur);
      if (await store.add(beat, 0) !== first) {
        alive = true;
        break;
      }
      await new Promise((r) => setTimeout(r, o.pollMs));
    }
    if (alive) return cur;
    o.log?.(
      `run "${cur}" on the endpoint showed no sign of life for ${o.heartbeatTimeoutMs} ms (its agents are ` +
        `gone): starting a new run`,
    );
    const after = dec.decode(await store.compareSet(DEFAULT_RUN_KEY, cur, mine));
    if (after !== cur && after !== RELEASED && after !== "") return after;
  }
}

/** Marks default run `runId` ended, so that the next launch on the endpoint creates a new one. */
export async function releaseDefaultRunId(store: Store, runId: string): Promise<void> {
  await store.compareSet(DEFAULT_RUN_KEY, runId, RELEASED);
}

/**
 * Adds 1 to the run's beat counter every `everyMs` until stopped, so that agents arriving later see the
 * run alive ({@link claimDefaultRunId}). A failed beat is ignored: the agent's own store calls report a
 * lost store.
 */
export class RunBeat {
  readonly #timer: ReturnType<typeof setInterval>;
  #busy = false;

  /** Starts beating run `runId` in `store`. */
  constructor(store: Store, runId: string, everyMs: number) {
    const key = runBeatKey(runId);
    const beat = () => {
      if (this.#busy) return;
      this.#busy = true;
      store.add(key, 1).catch(() => {}).finally(() => this.#busy = false);
    };
    beat();
    this.#timer = setInterval(beat, everyMs);
  }

  /** Stops beating. */
  stop(): void {
    clearInterval(this.#timer);
  }
}
