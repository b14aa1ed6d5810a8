/**
 * @module
 * FileStore: a Store in a directory shared by the processes of one host, one file per key, written
 * to a temporary file then renamed; add/compareSet/set/delete hold an O_EXCL lock file; waits poll.
 */

import { dirname, join } from "node:path";
import { PermissionError, StoreError } from "../../errors.ts";
import { isPermissionDenied } from "../permission.ts";
import { checkPrivateDir } from "./private_dir.ts";
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
  sleep,
  toBytes,
  waitTimeout,
} from "./store_util.ts";

/** Options of a {@link FileStore}. */
export interface FileStoreOptions {
  /** Default timeout of `get`, `wait` and of taking the lock, in ms (default 300000). */
  timeoutMs?: number;
  /** The rank that owns this store, named in its errors. */
  rank?: number;
  /**
   * The number of processes sharing the directory. When given, the process whose `close()` is the
   * `worldSize`-th removes the directory (torch's FileStore cleanup); otherwise it is left in place.
   */
  worldSize?: number;
  /** The longest pause between two polls of a wait, in ms (default 10; polls start at 1 ms). */
  pollMs?: number;
}

type Ctx = { rank?: number; op: string };

const LOCK = ".lock";
const CLOSED = ".closed";
/** A lock file older than this is left over from a crashed process and is broken. */
const STALE_LOCK_MS = 10_000;
/** Encoded names longer than this are replaced by a hash of the key (file names max 255 bytes). */
const MAX_NAME = 200;

const encoder = new TextEncoder();

/**
 * A {@link Store} kept in the directory `path` (created if absent), for processes on one host.
 * Values are files named after their keys; readers never see a half-written value. What it creates is
 * this user's only (directory 0700, files 0600): values may name shared segments. A directory that
 * another user owns, or that others may write in, is refused (StoreError naming it).
 */
export class FileStore implements Store {
  /** The directory holding the keys. */
  readonly path: string;
  /** Default timeout of `get`, `wait` and of taking the lock, in ms. */
  readonly timeoutMs: number;
  /** The rank named in errors, if any. */
  readonly rank?: number;
  readonly #worldSize?: number;
  readonly #pollMs: number;
  readonly #uid: number | null;
  #closing = new AbortController();
  #closed = false;

  /** Opens (creating if needed, 0700) the store directory `path`; refuses one that is not this user's alone. */
  constructor(path: string, opts: FileStoreOptions = {}) {
    this.path = path;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    this.rank = opts.rank;
    this.#worldSize = opts.worldSize;
    this.#pollMs = Math.max(1, opts.pollMs ?? 10);
    const ctx = { rank: this.rank, op: "FileStore" };
    checkTimeout(this.timeoutMs, ctx);
    try {
      Deno.mkdirSync(path, { recursive: true, mode: 0o700 }); // this user's only, like its files
    } catch (err) {
      if (isPermissionDenied(err)) {
        throw filePermissionError(`create the store directory ${path}`, path, err, ctx);
      }
      throw new StoreError(`cannot create the store directory ${path}: ${message(err)}`, {
        ...ctx,
        cause: err,
      });
    }
    this.#uid = checkPrivateDir(path, ctx);
  }

  /** The uid owning the directory, this user's (null where files have no owners). */
  get ownerUid(): number | null {
    return this.#uid;
  }

  /** Sets `key` to `value`. */
  async set(key: string, value: Uint8Array | string): Promise<void> {
    const ctx = this.#ctx("store.set", key);
    const file = await this.#file(key);
    const bytes = toBytes(value);
    await this.#locked(ctx, () => this.#write(file, bytes, ctx));
  }

  /** Returns the value of `key`, polling up to `timeoutMs` (default: the store's) for it. */
  async get(key: string, timeoutMs: number = this.timeoutMs): Promise<Uint8Array> {
    const ctx = this.#ctx("store.get", key);
    checkTimeout(timeoutMs, ctx);
    const file = await this.#file(key);
    const deadline = Date.now() + timeoutMs;
    for (let delay = 1;; delay = Math.min(delay * 2, this.#pollMs)) {
      const value = await this.#read(file, ctx);
      if (value !== undefined) return value;
      if (!isUnbounded(timeoutMs) && Date.now() >= deadline) throw waitTimeout([key], timeoutMs, ctx);
      await this.#pause(delay, deadline, timeoutMs, ctx);
    }
  }

  /** Adds `amount` to the counter at `key` (absent = 0) and returns the new value. */
  async add(key: string, amount: number): Promise<number> {
    const ctx = this.#ctx("store.add", key);
    checkAmount(amount, ctx);
    const file = await this.#file(key);
    return await this.#locked(ctx, () => this.#addTo(file, key, amount, ctx));
  }

  /** Sets `key` to `desired` if it holds `expected` (empty = absent); returns the value afterwards. */
  async compareSet(
    key: string,
    expected: Uint8Array | string,
    desired: Uint8Array | string,
  ): Promise<Uint8Array> {
    const ctx = this.#ctx("store.compareSet", key);
    const want = toBytes(expected);
    const next = toBytes(desired);
    const file = await this.#file(key);
    return await this.#locked(ctx, async () => {
      const current = await this.#read(file, ctx);
      const matches = current === undefined ? want.length === 0 : bytesEqual(current, want);
      if (!matches) return current ?? new Uint8Array(0);
      await this.#write(file, next, ctx);
      return next.slice();
    });
  }

  /** Waits until every key in `keys` is set, polling; StoreTimeoutError names the missing ones. */
  async wait(keys: string[], timeoutMs: number = this.timeoutMs): Promise<void> {
    const ctx = this.#ctx("store.wait");
    for (const key of keys) checkKey(key, ctx);
    checkTimeout(timeoutMs, ctx);
    const files = new Map<string, string>();
    for (const key of keys) files.set(key, await this.#file(key));
    const deadline = Date.now() + timeoutMs;
    for (let delay = 1;; delay = Math.min(delay * 2, this.#pollMs)) {
      for (const [key, file] of files) if (await this.#exists(file, ctx)) files.delete(key);
      if (files.size === 0) return;
      if (!isUnbounded(timeoutMs) && Date.now() >= deadline) {
        throw waitTimeout([...files.keys()], timeoutMs, ctx);
      }
      await this.#pause(delay, deadline, timeoutMs, ctx);
    }
  }

  /** Returns the values of `keys` once all are set (polling); StoreTimeoutError names the missing ones. */
  async multiGet(keys: string[], timeoutMs: number = this.timeoutMs): Promise<Uint8Array[]> {
    const ctx = this.#ctx("store.multiGet");
    for (const key of keys) checkKey(key, ctx);
    checkTimeout(timeoutMs, ctx);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.wait(keys, isUnbounded(timeoutMs) ? timeoutMs : Math.max(0, deadline - Date.now()));
      const values: Uint8Array[] = [];
      for (const key of keys) {
        const value = await this.#read(await this.#file(key), ctx);
        if (value === undefined) break; // deleted in between: wait again
        values.push(value);
      }
      if (values.length === keys.length) return values;
    }
  }

  /**
   * Returns the keys of `keys` that are set once at least one is, polling, or `[]` after `timeoutMs`.
   * A background watch polls at most once a second and its timers do not keep the process alive.
   */
  async watch(
    keys: string[],
    timeoutMs: number = this.timeoutMs,
    opts: WatchOptions = {},
  ): Promise<string[]> {
    const ctx = this.#ctx("store.watch");
    for (const key of keys) checkKey(key, ctx);
    checkTimeout(timeoutMs, ctx);
    const files = await Promise.all(keys.map((k) => this.#file(k)));
    const deadline = Date.now() + timeoutMs;
    const signal = opts.signal ? AbortSignal.any([opts.signal, this.#closing.signal]) : this.#closing.signal;
    // A background watch may wait for the job's whole life: it looks about once a second, not 100 times.
    const most = opts.background ? Math.max(this.#pollMs, 1000) : this.#pollMs;
    for (let delay = 1;; delay = Math.min(delay * 2, most)) {
      const set: string[] = [];
      for (let i = 0; i < keys.length; i++) if (await this.#exists(files[i], ctx)) set.push(keys[i]);
      if (set.length > 0 || keys.length === 0) return set;
      if (!isUnbounded(timeoutMs) && Date.now() >= deadline) return [];
      const left = isUnbounded(timeoutMs) ? delay : Math.max(0, Math.min(delay, deadline - Date.now()));
      await sleep(left, signal, ctx, opts.background);
    }
  }

  /** Returns whether every key in `keys` is set. */
  async check(keys: string[]): Promise<boolean> {
    const ctx = this.#ctx("store.check");
    for (const key of keys) {
      checkKey(key, ctx);
      if (!(await this.#exists(await this.#file(key), ctx))) return false;
    }
    return true;
  }

  /** Deletes `key`; returns whether it existed. */
  async deleteKey(key: string): Promise<boolean> {
    const ctx = this.#ctx("store.deleteKey", key);
    const file = await this.#file(key);
    return await this.#locked(ctx, async () => {
      try {
        await Deno.remove(file);
        return true;
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return false;
        throw fsError("delete", file, err, ctx);
      }
    });
  }

  /** The number of keys set (internal files excluded). */
  async numKeys(): Promise<number> {
    const ctx = this.#ctx("store.numKeys");
    let n = 0;
    try {
      for await (const entry of Deno.readDir(this.path)) if (!entry.name.startsWith(".")) n++;
    } catch (err) {
      throw fsError("list", this.path, err, ctx, this.path);
    }
    return n;
  }

  /**
   * Stops pending waits (they fail with StoreError) and refuses later calls. With `worldSize` set,
   * counts this close and removes the directory when every process has closed. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    if (this.#worldSize === undefined) return;
    const ctx = { rank: this.rank, op: "store.close" };
    const signal = new AbortController().signal;
    const closedFile = join(this.path, CLOSED);
    const n = await this.#locked(ctx, () => this.#addTo(closedFile, CLOSED, 1, ctx), signal);
    if (n >= this.#worldSize) {
      await Deno.remove(this.path, { recursive: true }).catch((err) => {
        if (!(err instanceof Deno.errors.NotFound)) throw fsError("remove", this.path, err, ctx, this.path);
      });
    }
  }

  #ctx(op: string, key?: string): Ctx {
    const ctx = { rank: this.rank, op };
    if (this.#closed) throw closedError(ctx);
    if (key !== undefined) checkKey(key, ctx);
    return ctx;
  }

  /** The file of `key`: its bytes with unsafe ones %-escaped (no ".": names starting with "." are ours). */
  async #file(key: string): Promise<string> {
    let name = "";
    for (const b of encoder.encode(key)) {
      const c = String.fromCharCode(b);
      name += /[A-Za-z0-9_-]/.test(c) ? c : "%" + b.toString(16).padStart(2, "0");
    }
    if (name.length > MAX_NAME) {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(key)));
      name = "#" + Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    }
    return join(this.path, name);
  }

  async #pause(delay: number, deadline: number, timeoutMs: number, ctx: Ctx): Promise<void> {
    const left = isUnbounded(timeoutMs) ? delay : Math.max(0, Math.min(delay, deadline - Date.now()));
    await sleep(left, this.#closing.signal, ctx);
  }

  async #read(file: string, ctx: Ctx): Promise<Uint8Array | undefined> {
    try {
      return await Deno.readFile(file);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw fsError("read", file, err, ctx);
    }
  }

  async #exists(file: string, ctx: Ctx): Promise<boolean> {
    try {
      await Deno.lstat(file);
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw fsError("stat", file, err, ctx);
    }
  }

  async #write(file: string, bytes: Uint8Array, ctx: Ctx): Promise<void> {
    const tmp = join(this.path, `.tmp-${crypto.randomUUID()}`);
    try {
      await Deno.writeFile(tmp, bytes, { mode: 0o600 });
      await Deno.rename(tmp, file);
    } catch (err) {
      await Deno.remove(tmp).catch(() => {});
      throw fsError("write", file, err, ctx);
    }
  }

  async #addTo(file: string, key: string, amount: number, ctx: Ctx): Promise<number> {
    const next = decodeCounter(await this.#read(file, ctx), key, ctx) + amount;
    await this.#write(file, encodeCounter(next), ctx);
    return next;
  }

  /** Runs `fn` holding the directory's lock file (created with O_EXCL; stale ones are broken). */
  async #locked<T>(ctx: Ctx, fn: () => Promise<T>, signal: AbortSignal = this.#closing.signal): Promise<T> {
    const lock = join(this.path, LOCK);
    const deadline = Date.now() + this.timeoutMs;
    for (let delay = 1;; delay = Math.min(delay * 2, this.#pollMs)) {
      try {
        (await Deno.open(lock, { write: true, createNew: true, mode: 0o600 })).close();
        break;
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw fsError("lock", lock, err, ctx);
      }
      await breakStaleLock(lock);
      if (!isUnbounded(this.timeoutMs) && Date.now() >= deadline) {
        throw new StoreError(`could not take the lock ${lock} within ${this.timeoutMs} ms`, ctx);
      }
      await sleep(delay, signal, ctx);
    }
    try {
      return await fn();
    } finally {
      await Deno.remove(lock).catch(() => {});
    }
  }
}

/** Removes `lock` if it is older than STALE_LOCK_MS (its holder died between lock and unlock). */
async function breakStaleLock(lock: string): Promise<void> {
  try {
    const info = await Deno.lstat(lock);
    if (info.mtime !== null && Date.now() - info.mtime.getTime() > STALE_LOCK_MS) await Deno.remove(lock);
  } catch {
    // Gone already, or removed by another process breaking it at the same time.
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function fsError(
  what: string,
  path: string,
  err: unknown,
  ctx: Ctx,
  dir = dirname(path),
): StoreError | PermissionError {
  if (isPermissionDenied(err)) return filePermissionError(`${what} ${path}`, dir, err, ctx);
  return new StoreError(`cannot ${what} ${path}: ${message(err)}`, { ...ctx, cause: err });
}

/** The store reads and writes its whole directory `dir`: the error names both flags. */
function filePermissionError(what: string, dir: string, err: unknown, ctx: Ctx): PermissionError {
  return new PermissionError(
    `FileStore: cannot ${what}: Deno refused file access`,
    `--allow-read=${dir} --allow-write=${dir}`,
    { ...ctx, cause: err },
  );
}
