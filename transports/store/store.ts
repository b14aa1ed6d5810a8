/**
 * @module
 * The Store interface: a small key-value service the ranks of a job share for rendezvous
 * (addresses, host ids, counters). Implementations: in-memory, file, TCP (Hono server), prefix.
 */

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
  /** Returns whether every key in `keys` is set, without waiting. */
  check(keys: string[]): Promise<boolean>;
  /** Deletes `key`; returns whether it existed. */
  deleteKey(key: string): Promise<boolean>;
  /** The number of keys in the store. */
  numKeys(): Promise<number>;
  /** Releases the store's resources (connections, timers). The data may outlive it. */
  close(): Promise<void>;
}
