/**
 * @module
 * PrefixStore: a view of another Store whose keys all start with a prefix, so that groups and
 * subsystems sharing one store cannot collide. It owns nothing; closing it leaves the inner store open.
 */

import {
  type Arrival,
  type ArrivalResult,
  arriveAt,
  type Gathered,
  type Gathering,
  type Store,
  type WatchOptions,
} from "./store.ts";
import { gatherAt } from "./all_gather.ts";
import { checkKey, closedError } from "./store_util.ts";

/**
 * A {@link Store} that forwards every call to `store` with the prefix put before each key: `prefix/key`,
 * or `prefixkey` when the prefix already ends with "/".
 * `numKeys()` counts the inner store's keys (all prefixes), as torch's PrefixStore does.
 */
export class PrefixStore implements Store {
  /** The prefix as given. */
  readonly prefix: string;
  readonly #head: string;
  /** The store the keys live in. */
  readonly inner: Store;
  #closed = false;

  /** Creates a view of `store` under `prefix`. */
  constructor(prefix: string, store: Store) {
    this.prefix = prefix;
    this.#head = prefix.endsWith("/") ? prefix : `${prefix}/`;
    this.inner = store;
  }

  /** Sets `prefix/key`. */
  async set(key: string, value: Uint8Array | string): Promise<void> {
    this.#open("store.set");
    return await this.inner.set(this.#key(key), value);
  }

  /** Returns the value of `prefix/key`, waiting for it like the inner store does. */
  async get(key: string): Promise<Uint8Array> {
    this.#open("store.get");
    return await this.inner.get(this.#key(key));
  }

  /** Adds `amount` to the counter `prefix/key`. */
  async add(key: string, amount: number): Promise<number> {
    this.#open("store.add");
    return await this.inner.add(this.#key(key), amount);
  }

  /** Compare-and-set of `prefix/key`. */
  async compareSet(
    key: string,
    expected: Uint8Array | string,
    desired: Uint8Array | string,
  ): Promise<Uint8Array> {
    this.#open("store.compareSet");
    return await this.inner.compareSet(this.#key(key), expected, desired);
  }

  /** Waits for every `prefix/key` (the timeout error names the prefixed keys). */
  async wait(keys: string[], timeoutMs?: number): Promise<void> {
    this.#open("store.wait");
    return await this.inner.wait(keys.map((k) => this.#key(k)), timeoutMs);
  }

  /** The values of every `prefix/key`, in one call of the inner store. */
  async multiGet(keys: string[], timeoutMs?: number): Promise<Uint8Array[]> {
    this.#open("store.multiGet");
    return await this.inner.multiGet(keys.map((k) => this.#key(k)), timeoutMs);
  }

  /** Which of the keys are set once one is (the answer names them without the prefix). */
  async watch(keys: string[], timeoutMs?: number, opts?: WatchOptions): Promise<string[]> {
    this.#open("store.watch");
    const set = new Set(await this.inner.watch(keys.map((k) => this.#key(k)), timeoutMs, opts));
    return keys.filter((k) => set.has(this.#key(k)));
  }

  /** An arrival on the prefixed keys, in one call of the inner store where it has one. */
  async arrive(a: Arrival, timeoutMs?: number): Promise<ArrivalResult> {
    this.#open("store.arrive");
    const r = await arriveAt(this.inner, {
      ...a,
      claimKey: this.#key(a.claimKey),
      counterKey: this.#key(a.counterKey),
      doneKey: this.#key(a.doneKey),
      watchKeys: a.watchKeys.map((k) => this.#key(k)),
    }, timeoutMs);
    if (r.set === null) return r;
    const set = new Set(r.set);
    return { held: r.held, set: a.watchKeys.filter((k) => set.has(this.#key(k))) };
  }

  /** A gathering under the prefixed tag, in one call of the inner store where it has one. */
  async gather(g: Gathering, timeoutMs?: number): Promise<Gathered> {
    this.#open("store.gather");
    return await gatherAt(this.inner, { ...g, tag: this.#key(g.tag) }, timeoutMs);
  }

  /** Whether every `prefix/key` is set. */
  async check(keys: string[]): Promise<boolean> {
    this.#open("store.check");
    return await this.inner.check(keys.map((k) => this.#key(k)));
  }

  /** Deletes `prefix/key`. */
  async deleteKey(key: string): Promise<boolean> {
    this.#open("store.deleteKey");
    return await this.inner.deleteKey(this.#key(key));
  }

  /** The number of keys in the inner store. */
  async numKeys(): Promise<number> {
    this.#open("store.numKeys");
    return await this.inner.numKeys();
  }

  /** Refuses later calls on this view; the inner store stays open (its owner closes it). */
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  /** The name `key` has in the inner store. */
  innerKey(key: string): string {
    return this.#key(key);
  }

  #key(key: string): string {
    checkKey(key, { op: "PrefixStore" });
    return this.#head + key;
  }

  #open(op: string): void {
    if (this.#closed) throw closedError({ op });
  }
}
