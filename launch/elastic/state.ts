/**
 * @module
 * ElasticState (Horovod-style): the training state a restarted worker group resumes from. Memory dies
 * with the workers, so a commit goes to a Store: by default the launcher's store (it outlives every
 * restart, and every node reaches it), or a directory on disk (`dir`) for runs without the launcher.
 * Rank 0 writes (DDP keeps replicas equal); every rank restores the same commit. Under the launcher,
 * `restore()` tells "nothing was committed" (false) from "the store that held the commits is gone"
 * (StoreError), by the store's instance id (elastic/endpoint.ts).
 */

import { packObject, unpackObject } from "../../collectives/objects.ts";
import { type ChoirEnv, readEnv } from "../../config.ts";
import { InvalidArgumentError } from "../../errors.ts";
import { verifyStoreInstance } from "./endpoint.ts";
import { FileStore, PrefixStore, type Store, TcpStore } from "../../transports/store/mod.ts";

/** A tensor ElasticState saves and restores in place. */
export type ElasticTensor =
  | Float32Array
  | Float64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array
  | BigInt64Array;

/** Plain values ElasticState saves with the tensors (step, epoch, learning rate, ...). */
export type ElasticValues = Record<string, number | string | boolean>;

/** Options of {@link ElasticState.open}. */
export interface ElasticStateOptions<V extends ElasticValues> {
  /** Tensors to save on commit and fill in place on restore (e.g. parameters, optimizer moments). */
  tensors: Record<string, ElasticTensor>;
  /** Values to save and restore (the object is kept: read and write `state.values`). */
  values: V;
  /** Name of this state, so that one job can keep several (default "state"). */
  name?: string;
  /** Keep commits in this store. */
  store?: Store;
  /** Keep commits in this directory (a FileStore; a shared file system for several nodes). */
  dir?: string;
  /** The rank that writes commits is 0; default RANK from the env, else 0. */
  rank?: number;
  /** The env to read (default: `readEnv()`). */
  env?: ChoirEnv;
  /** Timeout of store calls, in ms (default 60000). */
  timeoutMs?: number;
}

/**
 * A commit holds the model's tensors, so it is not capped like an object collective's message (the
 * store server caps bodies at 1 GiB); depth and types are still checked.
 */
const SNAPSHOT_LIMITS = { maxBytes: Infinity };

interface Snapshot {
  serial: number;
  values: ElasticValues;
  tensors: Record<string, ElasticTensor>;
}

/**
 * The state a worker group resumes from after a restart. Without `store` or `dir` it lives in the
 * launcher's store (MASTER_ADDR:MASTER_PORT under `choir/RUN_ID/state/`): it survives worker restarts
 * and is lost when the node serving the store goes: `restore()` then throws a StoreError rather than
 * start over unnoticed. `commit()` is cheap for small models; commit every step or every few.
 *
 * @example
 * ```ts ignore
 * const state = await ElasticState.open({ tensors: { w: model.w.data }, values: { step: 0 } });
 * if (await state.restore()) console.log(`resuming after step ${state.values.step}`);
 * ```
 */
export class ElasticState<V extends ElasticValues = ElasticValues> {
  /** The tensors, filled in place by `restore()`. */
  readonly tensors: Record<string, ElasticTensor>;
  /** The values; `restore()` assigns the committed ones. */
  values: V;
  /** Where commits go, for messages ("the launcher's store at HOST:PORT", "directory DIR"). */
  readonly where: string;
  /** This process's rank (only rank 0 writes). */
  readonly rank: number;
  readonly #store: Store;
  readonly #owned: Store[];
  readonly #key: string;
  readonly #instance?: { store: Store; id: string; where: string };
  #serial = 0;

  private constructor(
    opts: ElasticStateOptions<V>,
    store: Store,
    owned: Store[],
    where: string,
    rank: number,
    instance?: { store: Store; id: string; where: string },
  ) {
    this.tensors = opts.tensors;
    this.values = opts.values;
    this.#store = store;
    this.#owned = owned;
    this.where = where;
    this.rank = rank;
    this.#key = opts.name ?? "state";
    this.#instance = instance;
  }

  /** Opens the state's store; throws InvalidArgumentError when there is none to use. */
  static open<V extends ElasticValues>(opts: ElasticStateOptions<V>): Promise<ElasticState<V>> {
    const env = opts.env ?? readEnv();
    const rank = opts.rank ?? env.rank ?? 0;
    const timeoutMs = opts.timeoutMs ?? 60_000;
    if (opts.store !== undefined) {
      return Promise.resolve(new ElasticState(opts, opts.store, [], "a store", rank));
    }
    if (opts.dir !== undefined) {
      const fs = new FileStore(opts.dir, { timeoutMs, rank });
      return Promise.resolve(new ElasticState(opts, fs, [fs], `directory ${opts.dir}`, rank));
    }
    const { masterAddr, masterPort, token, jobId } = env;
    if (!env.storeExternal || !masterAddr || masterPort === undefined || !token || !jobId) {
      return Promise.reject(
        new InvalidArgumentError(
          "ElasticState needs the launcher's store (run under `deno task launch`), or a `dir` or `store` option",
          { rank, op: "ElasticState.open" },
        ),
      );
    }
    const tcp = new TcpStore({ host: masterAddr, port: masterPort, token, timeoutMs, rank });
    const store = new PrefixStore(`choir/${jobId}/state/`, tcp);
    const at = `${masterAddr}:${masterPort}`;
    const instance = env.storeInstance === undefined
      ? undefined
      : { store: tcp, id: env.storeInstance, where: at };
    return Promise.resolve(
      new ElasticState(opts, store, [tcp], `the launcher's store at ${at}`, rank, instance),
    );
  }

  /** Commits made or restored so far (0 before the first). */
  get serial(): number {
    return this.#serial;
  }

  /** Saves the tensors and values (rank 0 writes, in one store operation: a commit is whole or absent). */
  async commit(): Promise<void> {
    this.#serial++;
    if (this.rank !== 0) return;
    const snap: Snapshot = { serial: this.#serial, values: { ...this.values }, tensors: this.tensors };
    await this.#store.set(this.#key, packObject(snap, this.rank, "ElasticState.commit", SNAPSHOT_LIMITS));
  }

  /**
   * Loads the last commit into the tensors (in place) and values, and returns true. Returns false,
   * changing nothing, when nothing was ever committed: under the launcher, only after checking that the
   * store is the one the workers were started with (CHOIR_STORE_INSTANCE). Throws StoreError when the
   * store is unreachable, or was replaced since (the node serving it restarted: the commits are lost),
   * and InvalidArgumentError when a committed tensor does not fit its counterpart.
   */
  async restore(): Promise<boolean> {
    const op = "ElasticState.restore";
    if (this.#instance !== undefined) {
      const { store, id, where } = this.#instance;
      await verifyStoreInstance(store, id, where, { rank: this.rank, op });
    }
    if (!(await this.#store.check([this.#key]))) return false;
    const snap = unpackObject<Snapshot>(
      await this.#store.get(this.#key),
      this.rank,
      "ElasticState.restore",
      0,
      SNAPSHOT_LIMITS,
    );
    for (const [name, t] of Object.entries(this.tensors)) {
      const saved = snap.tensors[name];
      if (saved === undefined || saved.constructor !== t.constructor || saved.length !== t.length) {
        throw new InvalidArgumentError(
          `ElasticState.restore: tensor "${name}" was committed as ${describe(saved)}, but is ${
            describe(t)
          } now`,
          { rank: this.rank, op: "ElasticState.restore" },
        );
      }
      (t as Float32Array).set(saved as Float32Array);
    }
    this.values = { ...this.values, ...snap.values } as V;
    this.#serial = snap.serial;
    return true;
  }

  /** Closes the store connections it opened. */
  async close(): Promise<void> {
    for (const s of this.#owned) await s.close();
  }
}

function describe(t: ElasticTensor | undefined): string {
  return t === undefined ? "nothing" : `${t.constructor.name}(${t.length})`;
}
