/**
 * @module
 * MemoryStore: the Store of one process, a Map whose waiters are woken by promises when keys appear.
 * Ranks that run as tasks of one process share one instance; it also backs the TCP store server.
 */

import type { Store, WatchOptions } from "./store.ts";
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
import { StoreTimeoutError } from "../../errors.ts";

/** Options of a {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** Default timeout of `get` and `wait`, in ms (default 300000). */
  timeoutMs?: number;
  /** The rank that owns this store, named in its errors. */
  rank?: number;
}

/**
 * A parked `get`, `wait`, `multiGet` or `watch`: indexed under each key it still misses, so that a set
 * touches only the waiters of its key (a barrier of N ranks costs O(N), not a scan of every waiter).
 */
interface Waiter {
  /** The keys not yet set; `any` waiters wake on the first of them. */
  missing: Set<string>;
  any: boolean;
  wake(): void;
  fail(err: unknown): void;
}

/**
 * An in-process {@link Store}. `get`, `wait`, `multiGet` and `watch` park on a promise that the `set`,
 * `add` or `compareSet` creating the last missing key (for `watch`, any of them) resolves; no polling and
 * no timer but the timeout.
 */
export class MemoryStore implements Store {
  /** Default timeout of `get` and `wait`, in ms. */
  readonly timeoutMs: number;
  /** The rank named in errors, if any. */
  readonly rank?: number;
  #data = new Map<string, Uint8Array<ArrayBuffer>>();
  /** Parked waiters by a key they miss. */
  #waiting = new Map<string, Set<Waiter>>();
  #waiters = new Set<Waiter>();
  #closed = false;

  /** The number of `get`, `wait`, `multiGet` and `watch` calls parked now. */
  get parked(): number {
    return this.#waiters.size;
  }

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
      await this.#park([key], false, left, timeoutMs, "store.get", signal);
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
    const deadline = Date.now() + timeoutMs;
    while (!this.#has(keys)) {
      await this.#park(keys, false, Math.max(0, deadline - Date.now()), timeoutMs, op, signal);
    }
  }

  /**
   * Returns copies of the values of `keys`, in order, once all are set; throws StoreTimeoutError naming
   * the missing ones after `timeoutMs` (default: the store's). `signal` abandons the wait.
   */
  async multiGet(
    keys: string[],
    timeoutMs: number = this.timeoutMs,
    signal?: AbortSignal,
  ): Promise<Uint8Array<ArrayBuffer>[]> {
    await this.wait(keys, timeoutMs, signal);
    for (;;) {
      const values = keys.map((k) => this.#data.get(k));
      if (values.every((v) => v !== undefined)) return values.map((v) => v!.slice());
      await this.wait(keys, timeoutMs, signal); // a key deleted in between: wait again
    }
  }

  /**
   * Returns the keys of `keys` that are set once at least one is (at once when some are), or `[]`
   * after `timeoutMs` (default: the store's). A background watch's timer does not keep the process alive.
   */
  async watch(
    keys: string[],
    timeoutMs: number = this.timeoutMs,
    opts: WatchOptions = {},
  ): Promise<string[]> {
    const op = "store.watch";
    this.#open(op);
    for (const key of keys) checkKey(key, { rank: this.rank, op });
    checkTimeout(timeoutMs, { rank: this.rank, op });
    const present = () => keys.filter((k) => this.#data.has(k));
    const deadline = Date.now() + timeoutMs;
    while (keys.length > 0 && present().length === 0) {
      const left = Math.max(0, deadline - Date.now());
      try {
        await this.#park(keys, true, left, timeoutMs, op, opts.signal, opts.background);
      } catch (err) {
        if (err instanceof StoreTimeoutError) return [];
        throw err;
      }
    }
    return present();
  }

  /** Whether `key` is set (synchronous; for the server's error answers). */
  has(key: string): boolean {
    return this.#data.has(key);
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
    const fresh = !this.#data.has(key);
    this.#data.set(key, value);
    if (!fresh) return; // waiters only wait for keys to appear
    const parked = this.#waiting.get(key);
    if (parked === undefined) return;
    this.#waiting.delete(key);
    for (const w of parked) {
      w.missing.delete(key);
      if (w.any || w.missing.size === 0) w.wake();
    }
  }

  /**
   * Parks until `keys` are all present (`any`: one of them), `leftMs` passes, `signal` aborts or the
   * store closes. A key deleted after the waiter parked counts as present: callers check again on wake.
   */
  #park(
    keys: readonly string[],
    any: boolean,
    leftMs: number,
    timeoutMs: number,
    op: string,
    signal?: AbortSignal,
    unref = false,
  ): Promise<void> {
    const ctx = { rank: this.rank, op };
    if (signal?.aborted) return Promise.reject(closedError(ctx));
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        this.#waiters.delete(waiter);
        for (const k of waiter.missing) {
          const set = this.#waiting.get(k);
          set?.delete(waiter);
          if (set?.size === 0) this.#waiting.delete(k);
        }
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(closedError(ctx));
      };
      const waiter: Waiter = {
        missing: new Set(keys.filter((k) => !this.#data.has(k))),
        any,
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
        if (unref) Deno.unrefTimer(timer);
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.add(waiter);
      for (const k of waiter.missing) {
        let set = this.#waiting.get(k);
        if (set === undefined) this.#waiting.set(k, set = new Set());
        set.add(waiter);
      }
    });
  }
}
