/**
 * @module
 * MemoryStore: the Store of one process, a Map whose waiters are woken by promises when keys appear.
 * Ranks that run as tasks of one process share one instance; it also backs the TCP store server.
 */

import type { Store } from "./store.ts";
import {
  bytesEqual,
  checkAmount,
  checkKey,
  checkTimeout,
  closedError,
  decodeCounter,
  DEFAULT_STORE_TIMEOUT_MS,
  encodeCounter,
  isUnbounded,
  toBytes,
  waitTimeout,
} from "./store_util.ts";

/** Options of a {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** Default timeout of `get` and `wait`, in ms (default 300000). */
  timeoutMs?: number;
  /** The rank that owns this store, named in its errors. */
  rank?: number;
}

interface Waiter {
  keys: readonly string[];
  wake(): void;
  fail(err: unknown): void;
}

/**
 * An in-process {@link Store}. `get` and `wait` park on a promise that the `set`, `add` or
 * `compareSet` creating the last missing key resolves; no polling and no timer but the timeout.
 */
export class MemoryStore implements Store {
  /** Default timeout of `get` and `wait`, in ms. */
  readonly timeoutMs: number;
  /** The rank named in errors, if any. */
  readonly rank?: number;
  #data = new Map<string, Uint8Array<ArrayBuffer>>();
  #waiters = new Set<Waiter>();
  #closed = false;

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** How many `get`/`wait` calls are parked waiting for keys. */
  get waiting(): number {
    return this.#waiters.size;
  }

  /** Creates an empty store. */
  constructor(opts: MemoryStoreOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    this.rank = opts.rank;
    checkTimeout(this.timeoutMs, { rank: this.rank, op: "MemoryStore" });
  }

  /** Sets `key` to `value`, waking the waiters it completes. */
  set(key: string, value: Uint8Array | string): Promise<void> {
    try {
      this.#open("store.set", key);
      this.#put(key, toBytes(value));
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Returns a copy of the value of `key`, waiting up to `timeoutMs` (default: the store's) for it;
   * `signal` abandons the wait with a StoreError.
   */
  async get(
    key: string,
    timeoutMs: number = this.timeoutMs,
    signal?: AbortSignal,
  ): Promise<Uint8Array<ArrayBuffer>> {
    this.#open("store.get", key);
    checkTimeout(timeoutMs, { rank: this.rank, op: "store.get" });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = this.#data.get(key);
      if (value !== undefined) return value.slice();
      const left = Math.max(0, deadline - Date.now());
      await this.#park([key], left, timeoutMs, "store.get", signal);
    }
  }

  /** Adds `amount` to the counter at `key` (absent = 0) and returns the new value. */
  add(key: string, amount: number): Promise<number> {
    try {
      const ctx = { rank: this.rank, op: "store.add" };
      this.#open(ctx.op, key);
      checkAmount(amount, ctx);
      const next = decodeCounter(this.#data.get(key), key, ctx) + amount;
      this.#put(key, encodeCounter(next));
      return Promise.resolve(next);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Sets `key` to `desired` if it holds `expected` (empty = absent); returns the value afterwards. */
  compareSet(
    key: string,
    expected: Uint8Array | string,
    desired: Uint8Array | string,
  ): Promise<Uint8Array<ArrayBuffer>> {
    try {
      this.#open("store.compareSet", key);
      const want = toBytes(expected);
      const current = this.#data.get(key);
      const matches = current === undefined ? want.length === 0 : bytesEqual(current, want);
      if (!matches) return Promise.resolve(current?.slice() ?? new Uint8Array(0));
      const next = toBytes(desired);
      this.#put(key, next);
      return Promise.resolve(next.slice());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Waits until every key in `keys` is set; throws StoreTimeoutError naming the missing ones after
   * `timeoutMs` (default: the store's). `signal` abandons the wait with a StoreError.
   */
  async wait(keys: string[], timeoutMs: number = this.timeoutMs, signal?: AbortSignal): Promise<void> {
    const op = "store.wait";
    this.#open(op);
    for (const key of keys) checkKey(key, { rank: this.rank, op });
    checkTimeout(timeoutMs, { rank: this.rank, op });
    if (this.#has(keys)) return;
    await this.#park(keys, timeoutMs, timeoutMs, op, signal);
  }

  /** Returns whether every key in `keys` is set. */
  check(keys: string[]): Promise<boolean> {
    try {
      this.#open("store.check");
      return Promise.resolve(this.#has(keys));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Deletes `key`; returns whether it existed. */
  deleteKey(key: string): Promise<boolean> {
    try {
      this.#open("store.deleteKey", key);
      return Promise.resolve(this.#data.delete(key));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The number of keys set. */
  numKeys(): Promise<number> {
    try {
      this.#open("store.numKeys");
      return Promise.resolve(this.#data.size);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Fails every pending wait with a StoreError and refuses later calls. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    const err = closedError({ rank: this.rank, op: "store.close" });
    for (const w of [...this.#waiters]) w.fail(err);
    this.#waiters.clear();
    return Promise.resolve();
  }

  #open(op: string, key?: string): void {
    if (this.#closed) throw closedError({ rank: this.rank, op });
    if (key !== undefined) checkKey(key, { rank: this.rank, op });
  }

  #has(keys: readonly string[]): boolean {
    return keys.every((k) => this.#data.has(k));
  }

  #put(key: string, value: Uint8Array<ArrayBuffer>): void {
    this.#data.set(key, value);
    for (const w of [...this.#waiters]) {
      if (w.keys.includes(key) && this.#has(w.keys)) w.wake();
    }
  }

  /** Parks until `keys` are all present, `leftMs` passes, `signal` aborts or the store closes. */
  #park(
    keys: readonly string[],
    leftMs: number,
    timeoutMs: number,
    op: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const ctx = { rank: this.rank, op };
    if (signal?.aborted) return Promise.reject(closedError(ctx));
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        this.#waiters.delete(waiter);
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(closedError(ctx));
      };
      const waiter: Waiter = {
        keys,
        wake: () => {
          done();
          resolve();
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      if (!isUnbounded(leftMs)) {
        timer = setTimeout(() => {
          done();
          reject(waitTimeout(keys.filter((k) => !this.#data.has(k)), timeoutMs, ctx));
        }, leftMs);
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(waiter);
    });
  }
}
