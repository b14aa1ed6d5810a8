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
  /** Returns whether every key in `keys` is set, without waiting. */
  check(keys: string[]): Promise<boolean>;
  /** Deletes `key`; returns whether it existed. */
  deleteKey(key: string): Promise<boolean>;
  /** The number of keys in the store. */
  numKeys(): Promise<number>;
  /** Releases the store's resources (connections, timers). The data may outlive it. */
  close(): Promise<void>;
}
