/**
 * @module
 * The Store interface: a small key-value service the ranks of a job share for rendezvous
 * (addresses, host ids, counters). Implementations: in-memory, file, TCP (Hono server), prefix.
 */

/** Options of {@link Store.watch}. */
export interface WatchOptions {
  /**
   * A watch in the background (a process-wide watcher) that must not keep the process alive while it
   * waits: the program may end with it pending. Default false.
   */
  background?: boolean;
  /** Abandons the watch: it rejects with a StoreError. */
  signal?: AbortSignal;
}

/**
 * One arrival at a counted barrier ({@link Store.arrive}): claim `claimKey` with `claim` (set it if it is
 * absent), and only if this claim holds, add 1 to `counterKey`, set `doneKey` when that makes `size`,
 * then watch `watchKeys`.
 */
export interface Arrival {
  /** The key this arrival claims (a rank's arrival key). */
  claimKey: string;
  /** The claim's value, unique to this arrival (it names the process and carries a nonce). */
  claim: string;
  /** The counter of arrivals. */
  counterKey: string;
  /** Arrivals that complete the barrier. */
  size: number;
  /** Set (to "1") by the arrival that completes the barrier. */
  doneKey: string;
  /** The keys watched once counted, `doneKey` among them. */
  watchKeys: string[];
}

/** What {@link Store.arrive} found. */
export interface ArrivalResult {
  /** The value `claimKey` holds: `claim` itself when this arrival holds it. */
  held: string;
  /**
   * When the claim held: which of `watchKeys` are set (`[]` when the wait ran out first, perhaps at the
   * server's longest wait: watch again for what is left). Null when another claim held the key: nothing
   * was counted or watched.
   */
  set: string[] | null;
}

/**
 * One rank's part of an all-gather of short values ({@link Store.gather}): rank `rank` of `size` sends
 * `value` under `tag` and gets every rank's value back.
 */
export interface Gathering {
  /** The gather's key prefix: the values live at `<tag>/<rank>`, the table at `<tag>/all`. */
  tag: string;
  /** This rank, 0 to `size - 1`. */
  rank: number;
  /** Ranks taking part. */
  size: number;
  /** This rank's value (at most 4,096 characters). */
  value: string;
}

/** What {@link Store.gather} returns: every rank's value, without a string per rank. */
export interface Gathered {
  /** The distinct values, in the order of the first rank holding each. */
  values: string[];
  /** Each rank's value as an index into `values`, in rank order. */
  index: Int32Array;
}

/** A key-value store shared by the ranks of a job, like torch.distributed's `Store`. */
export interface Store {
  /** Sets `key` to `value`, replacing any previous value. */
  set(key: string, value: Uint8Array | string): Promise<void>;
  /** Returns the value of `key`, waiting up to the store's timeout for it to be set. */
  get(key: string): Promise<Uint8Array>;
  /** Adds `amount` to the integer counter at `key` (created at 0) and returns the new value. */
  add(key: string, amount: number): Promise<number>;
  /**
   * Sets `key` to `desired` if its current value equals `expected` (an empty `expected` means
   * "key absent"); returns the value the key holds afterwards.
   */
  compareSet(
    key: string,
    expected: Uint8Array | string,
    desired: Uint8Array | string,
  ): Promise<Uint8Array>;
  /** Waits until every key in `keys` is set, or throws `StoreTimeoutError` after `timeoutMs`. */
  wait(keys: string[], timeoutMs?: number): Promise<void>;
  /**
   * Returns the values of `keys`, in order, in one round trip: waits up to `timeoutMs` (default: the
   * store's timeout) until every key is set, else throws `StoreTimeoutError` naming the missing ones.
   */
  multiGet(keys: string[], timeoutMs?: number): Promise<Uint8Array[]>;
  /**
   * Returns which of `keys` are set, in their order, as soon as at least one is: at once when some are
   * set already (so `timeoutMs` 0 asks which keys exist), else when the first is set, or `[]` when
   * `timeoutMs` (default: the store's timeout) passes first. One round trip, whatever the keys.
   */
  watch(keys: string[], timeoutMs?: number, opts?: WatchOptions): Promise<string[]>;
  /**
   * Optional: an {@link Arrival} in one round trip (the TCP store does it on the server), where
   * {@link arriveAt} otherwise makes three calls (compare-set, add, watch); waits up to `timeoutMs`
   * (default: the store's timeout).
   */
  arrive?(arrival: Arrival, timeoutMs?: number): Promise<ArrivalResult>;
  /**
   * Optional: a {@link Gathering} in one round trip (the TCP store's server counts the ranks in and
   * answers every waiter with one table), where `gatherAt` (all_gather.ts) otherwise makes three calls;
   * waits up to `timeoutMs` (default: the store's timeout), then throws StoreTimeoutError naming the
   * keys of the ranks that sent nothing.
   */
  gather?(g: Gathering, timeoutMs?: number): Promise<Gathered>;
  /** Returns whether every key in `keys` is set, without waiting. */
  check(keys: string[]): Promise<boolean>;
  /** Deletes `key`; returns whether it existed. */
  deleteKey(key: string): Promise<boolean>;
  /** The number of keys in the store. */
  numKeys(): Promise<number>;
  /** Releases the store's resources (connections, timers). The data may outlive it. */
  close(): Promise<void>;
}

/**
 * An {@link Arrival} on `store`: in one call where the store has {@link Store.arrive}, else as three
 * (compare-set, add, watch) with the same outcome.
 */
export async function arriveAt(store: Store, a: Arrival, timeoutMs?: number): Promise<ArrivalResult> {
  if (typeof store.arrive === "function") return await store.arrive(a, timeoutMs);
  const held = new TextDecoder().decode(await store.compareSet(a.claimKey, "", a.claim));
  if (held !== a.claim) return { held, set: null };
  if ((await store.add(a.counterKey, 1)) >= a.size) await store.set(a.doneKey, "1");
  return { held, set: await store.watch(a.watchKeys, timeoutMs) };
}
