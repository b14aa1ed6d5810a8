/**
 * @module
 * One background watch per store client for the whole process, instead of a poller per group: whoever
 * wants to hear when a key appears (a group's hang-report request, the job's duplicate-rank verdict)
 * subscribes here, and a single `Store.watch` long-poll on the root store (prefixes stripped) waits for
 * all their keys at once. A new subscription while the watch is held wakes it through a private nudge key,
 * so that the next watch includes it; subscriptions made in one synchronous turn share the first watch.
 * The watch runs in the background: it never keeps the process alive.
 * An idle process costs the store one held request and one request per {@link HOLD_MS}.
 */

import { PrefixStore } from "./prefix_store.ts";
import type { Store } from "./store.ts";

/** A subscription made by {@link onKeySet}. */
export interface KeySubscription {
  /** Stops it (idempotent); its callback is never called afterwards. */
  stop(): void;
}

/** How long one watch is held before it is asked again. */
const HOLD_MS = 30_000;

interface Sub {
  fire: () => void;
  fail: (err: unknown) => void;
}

const watchers = new WeakMap<Store, Watcher>();

/**
 * Calls `fire` once, soon after `key` of `store` is set (at once if it is set already). Calls `fail`
 * instead if the store fails (it is closed or its server is gone); then nobody is watching any more.
 */
export function onKeySet(
  store: Store,
  key: string,
  fire: () => void,
  fail: (err: unknown) => void = () => {},
): KeySubscription {
  let root = store;
  let name = key;
  while (root instanceof PrefixStore) {
    name = root.innerKey(name);
    root = root.inner;
  }
  let w = watchers.get(root);
  if (!w) watchers.set(root, w = new Watcher(root));
  return w.add(name, { fire, fail });
}

/** The watcher of one root store. */
class Watcher {
  readonly #store: Store;
  readonly #subs = new Map<string, Set<Sub>>();
  readonly #nudgeKey = `choir/watch/${crypto.randomUUID()}`;
  #running = false;
  /** A watch is held whose key list is out of date (a nudge has been sent). */
  #nudged = false;
  #holding = false;

  constructor(store: Store) {
    this.#store = store;
  }

  add(key: string, sub: Sub): KeySubscription {
    let set = this.#subs.get(key);
    if (!set) this.#subs.set(key, set = new Set());
    set.add(sub);
    if (!this.#running) {
      // Started a microtask later: subscriptions made in the same turn (a new group's hang-report key
      // and the job's duplicate-rank key) share the first watch instead of a nudge, a delete and a
      // second watch each: 3 of a rank's 9 store requests at start-up.
      this.#running = true;
      queueMicrotask(() => void this.#loop());
    } else if (this.#holding && !this.#nudged) this.#nudge();
    return {
      stop: () => {
        const now = this.#subs.get(key);
        now?.delete(sub);
        if (now?.size === 0) this.#subs.delete(key);
      },
    };
  }

  #nudge(): void {
    this.#nudged = true;
    this.#store.set(this.#nudgeKey, "1").catch(() => {}); // a failing store fails the held watch too
  }

  async #loop(): Promise<void> {
    this.#running = true;
    try {
      while (this.#subs.size > 0) {
        const keys = [...this.#subs.keys()];
        this.#holding = true;
        this.#nudged = false;
        let set: string[];
        try {
          set = await this.#store.watch([...keys, this.#nudgeKey], HOLD_MS, { background: true });
        } finally {
          this.#holding = false;
        }
        if (set.includes(this.#nudgeKey)) await this.#store.deleteKey(this.#nudgeKey);
        for (const key of set) {
          const subs = this.#subs.get(key);
          if (!subs) continue;
          this.#subs.delete(key);
          for (const s of subs) {
            try {
              s.fire();
            } catch { /* a subscriber's own failure is its own */ }
          }
        }
      }
    } catch (err) {
      const all = [...this.#subs.values()].flatMap((s) => [...s]);
      this.#subs.clear();
      watchers.delete(this.#store);
      for (const s of all) s.fail(err);
    } finally {
      this.#running = false;
    }
  }
}
