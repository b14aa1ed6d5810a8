/**
 * @module
 * `spawnWorkers()`: starts a group of Worker ranks in this process and serves them from the main
 * thread: their store (a MemoryStore of this group only), the shared memory of each of their groups,
 * and their results. Nothing is global, so several groups can live side by side. What runs in a
 * rank is left to the module (it calls `workerProcessGroup()`).
 */

import { PeerLostError, PermissionError, RendezvousError, TransportError } from "../../errors.ts";
import { DEFAULT_TIMEOUT_MS } from "../../config.ts";
import { MemoryStore } from "../store/memory_store.ts";
import type { Store } from "../store/store.ts";
import { Layout, STATE_CLOSED } from "../shm/layout.ts";
import {
  fromWire,
  type InitMessage,
  type RankMessage,
  type Reply,
  type Request,
  toWire,
  WORKER_NAME_PREFIX,
} from "./protocol.ts";
import { makeSegment, type SegmentSpec } from "./segment.ts";

/** Options of {@link spawnWorkers}. */
export interface SpawnWorkersOptions {
  /** Data every rank receives from `workerData()` (structured-cloned; SharedArrayBuffers are shared). */
  data?: unknown;
  /**
   * How long the ranks may take to join, and the default timeout of their operations, ms (default
   * 5 minutes, as for process ranks).
   */
  timeoutMs?: number;
  /** Ring bytes of each pair in the world group's memory (default as for shm). */
  ringBytes?: number;
  /** Arena bytes of the world group's memory (default as for shm). */
  arenaBytes?: number;
  /** A name for the group, part of each Worker's name (default: a random id). */
  name?: string;
}

interface RankState {
  worker: Worker;
  port: MessagePort | null;
  joined: boolean;
  left: boolean;
  result?: { value: unknown };
  /** The memories this rank registered in, with its rank there (marked closed if its Worker dies). */
  memories: { words: Int32Array; layout: Layout; rank: number }[];
}

/** A running group of Worker ranks. Close it with {@link WorkerGroup.close}. */
export class WorkerGroup {
  /** Number of ranks. */
  readonly size: number;
  /** The store the ranks share (a MemoryStore owned by this group). */
  readonly store: Store;
  readonly #store: MemoryStore;
  readonly #ranks: RankState[] = [];
  readonly #segments = new Map<string, { memory: WebAssembly.Memory; left: number }>();
  readonly #timeoutMs: number;
  readonly #spec: Omit<SegmentSpec, "size">;
  readonly #data: unknown;
  #failure: Error | null = null;
  readonly #listeners = new Set<() => void>();
  #closed = false;

  /** @internal Use {@link spawnWorkers}. */
  constructor(size: number, opts: SpawnWorkersOptions) {
    this.size = size;
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#store = new MemoryStore({ timeoutMs: this.#timeoutMs });
    this.store = this.#store;
    this.#spec = { ringBytes: opts.ringBytes, arenaBytes: opts.arenaBytes };
    this.#data = opts.data;
  }

  /** The Workers, in rank order (for the embedder's own messages; choir's carry a `choir` field). */
  get workers(): readonly Worker[] {
    return this.#ranks.map((r) => r.worker);
  }

  /** @internal Starts rank `rank` from `url`. */
  start(rank: number, url: string, name: string): void {
    const worker = new Worker(url, { type: "module", name: `${WORKER_NAME_PREFIX}${name}:${rank}` });
    const st: RankState = { worker, port: null, joined: false, left: false, memories: [] };
    this.#ranks.push(st);
    worker.addEventListener("message", (e: MessageEvent) => this.#onRankMessage(rank, e.data));
    worker.addEventListener("error", (e: ErrorEvent) => {
      e.preventDefault();
      this.#fail(rank, workerError(rank, url, e.message, st.port !== null));
    });
    worker.addEventListener("messageerror", () => {
      this.#fail(
        rank,
        new TransportError("a message from the Worker could not be read", { rank, op: "worker" }),
      );
    });
  }

  /** @internal Resolves when rank `rank` has said hello (its module is loaded). */
  async greeted(rank: number): Promise<void> {
    await this.#until(
      "join",
      (r) => r.port !== null,
      this.#timeoutMs,
      () =>
        new RendezvousError(`Worker rank ${rank} did not start within ${this.#timeoutMs} ms`, {
          op: "spawnWorkers",
        }),
      [rank],
    );
  }

  /** @internal Resolves when every rank has joined; rejects with the first failure or a RendezvousError. */
  async joined(): Promise<void> {
    await this.#until("join", (r) => r.joined, this.#timeoutMs, (missing) =>
      new RendezvousError(
        `Worker ranks ${missing.join(", ")} of ${this.size} did not join within ${this.#timeoutMs} ms`,
        { op: "spawnWorkers" },
      ));
  }

  /**
   * Every rank's value passed to `reportResult()`, in rank order, once all have reported. Rejects with
   * the first rank's failure (PeerLostError for an uncaught error; a rank whose collective timed out
   * fails that way too), or with TransportError naming the silent ranks after `timeoutMs` (default:
   * no limit, since a job may run for hours).
   */
  async results(timeoutMs: number = Infinity): Promise<unknown[]> {
    await this.#until(
      "results",
      (r) => r.result !== undefined,
      timeoutMs,
      (missing) =>
        new TransportError(`Worker ranks ${missing.join(", ")} reported no result within ${timeoutMs} ms`, {
          op: "results",
        }),
    );
    return this.#ranks.map((r) => r.result!.value);
  }

  /**
   * Resolves once every rank has destroyed its world group (`pg.destroy()`), so a program written
   * for process ranks needs no change to run here. Rejects with the first rank's failure, or with
   * TransportError naming the ranks still running after `timeoutMs` (default: no limit).
   */
  async finished(timeoutMs: number = Infinity): Promise<void> {
    await this.#until(
      "finished",
      (r) => r.left,
      timeoutMs,
      (missing) =>
        new TransportError(`Worker ranks ${missing.join(", ")} were still running after ${timeoutMs} ms`, {
          op: "finished",
        }),
    );
  }

  /** Terminates every Worker and releases the store, ports and memories. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [rank, r] of this.#ranks.entries()) {
      this.#markGone(rank);
      r.port?.close();
      r.worker.terminate();
    }
    this.#segments.clear();
    this.#changed();
    await this.#store.close();
  }

  /** Resolves once `has` holds for every rank of `ranks` (default all); rejects on a failure or after `ms`. */
  async #until(
    what: string,
    has: (r: RankState) => boolean,
    ms: number,
    timeout: (missing: number[]) => Error,
    ranks: readonly number[] = this.#ranks.map((_, i) => i),
  ): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let check: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        check = () => {
          if (this.#failure) reject(this.#failure);
          else if (this.#closed) {
            reject(new TransportError(`the Worker group was closed (${what})`, { op: what }));
          } else if (ranks.every((i) => has(this.#ranks[i]))) resolve();
        };
        this.#listeners.add(check);
        if (Number.isFinite(ms)) {
          timer = setTimeout(() => reject(timeout(ranks.filter((i) => !has(this.#ranks[i])))), ms);
        }
        check();
      });
    } finally {
      clearTimeout(timer);
      this.#listeners.delete(check!);
    }
  }

  #changed(): void {
    for (const l of [...this.#listeners]) l();
  }

  #fail(rank: number, e: Error): void {
    this.#markGone(rank);
    this.#failure ??= e;
    this.#changed();
  }

  /** Marks `rank` closed in every memory it joined, and wakes its peers, so their waits end with PeerLostError. */
  #markGone(rank: number): void {
    for (const m of this.#ranks[rank]?.memories ?? []) {
      Atomics.store(m.words, m.layout.state(m.rank) >> 2, STATE_CLOSED);
      for (let p = 0; p < m.layout.size; p++) {
        if (p === m.rank) continue;
        Atomics.add(m.words, m.layout.bell(p) >> 2, 1);
        Atomics.notify(m.words, m.layout.bell(p) >> 2);
      }
    }
  }

  #onRankMessage(rank: number, msg: RankMessage): void {
    if (typeof msg !== "object" || msg === null || !("choir" in msg)) return; // the embedder's own
    const st = this.#ranks[rank];
    switch (msg.choir) {
      case "hello": {
        const ch = new MessageChannel();
        st.port = ch.port1;
        ch.port1.onmessage = (e: MessageEvent<Request>) => this.#serve(rank, ch.port1, e.data);
        const init: InitMessage = {
          choir: "init",
          rank,
          size: this.size,
          timeoutMs: this.#timeoutMs,
          data: this.#data,
          port: ch.port2,
          spec: this.#spec,
        };
        st.worker.postMessage(init, [ch.port2]);
        break;
      }
      case "joined":
        st.joined = true;
        break;
      case "left":
        st.left = true;
        break;
      case "failed":
        this.#fail(rank, fromWire(msg.error));
        break;
      case "result":
        st.result = { value: msg.value };
        break;
    }
    this.#changed();
  }

  async #serve(rank: number, port: MessagePort, req: Request): Promise<void> {
    let reply: Reply;
    try {
      let value: unknown;
      if (req.op === "segment") value = this.#segment(rank, req.key, req.spec, req.rank);
      else if (req.op === "symmetric") value = this.#symmetric(req.key, req.size, req.stride);
      else {
        const fn = this.#store[req.method] as (...a: unknown[]) => Promise<unknown>;
        value = await fn.apply(this.#store, req.args);
      }
      reply = { id: req.id, ok: true, value };
    } catch (e) {
      reply = { id: req.id, ok: false, error: toWire(e) };
    }
    if (!this.#closed) port.postMessage(reply);
  }

  /** The memory of symmetric allocation `key`, made on the first ask; forgotten once all `size` have it. */
  #symmetric(key: string, size: number, stride: number): WebAssembly.Memory {
    let s = this.#segments.get(key);
    if (!s) {
      if (!Number.isInteger(stride) || stride < 1 || stride * size > 2 ** 32) {
        throw new TransportError(`a symmetric allocation of ${size} x ${stride} bytes does not fit 4 GiB`, {
          op: "alloc",
        });
      }
      s = { memory: sharedMemory(stride * size), left: size };
      this.#segments.set(key, s);
    }
    if (--s.left === 0) this.#segments.delete(key);
    return s.memory;
  }

  /** The memory of group `key`, made on the first ask; forgotten here once every member has it. */
  #segment(worker: number, key: string, spec: SegmentSpec, rank: number): WebAssembly.Memory {
    let s = this.#segments.get(key);
    if (!s) {
      s = { memory: makeSegment({ ...this.#spec, ...definedOnly(spec) }), left: spec.size };
      this.#segments.set(key, s);
    }
    if (--s.left === 0) this.#segments.delete(key);
    const dv = new DataView(s.memory.buffer);
    const layout = new Layout(spec.size, dv.getUint32(12, true), dv.getUint32(24, true));
    this.#ranks[worker].memories.push({ words: new Int32Array(s.memory.buffer), layout, rank });
    return s.memory;
  }
}

/** A fixed-size shared memory of `pages` WebAssembly pages (never grown: views must stay valid). */
function sharedMemory(bytes: number): WebAssembly.Memory {
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
}

function definedOnly(spec: SegmentSpec): SegmentSpec {
  return Object.fromEntries(
    Object.entries(spec).filter(([, v]) => v !== undefined),
  ) as unknown as SegmentSpec;
}

/** The error of a Worker that failed: a PermissionError when Deno refused it a permission. */
function workerError(rank: number, url: string, message: string, started: boolean): Error {
  const first = message.split("\n")[0];
  const read = /Requires read access to "([^"]+)"/.exec(first);
  if (read || /NotCapable|PermissionDenied|Requires \w+ access/.test(first)) {
    const path = read?.[1] ?? (url.startsWith("file:") ? new URL(url).pathname : url);
    return new PermissionError(
      `Worker rank ${rank} could not load ${url} (a Worker reads its module and every local module it imports): ${first}`,
      read || url.startsWith("file:") ? `--allow-read=${path}` : "--allow-import",
      { rank, op: "spawnWorkers" },
    );
  }
  if (!started) {
    return new TransportError(`Worker rank ${rank} could not start ${url}: ${first}`, {
      rank,
      op: "spawnWorkers",
    });
  }
  return new PeerLostError(`Worker rank ${rank} failed: ${first}`, { rank, op: "worker" });
}

/**
 * Starts `n` Worker ranks running `module` in this process and resolves once every rank's
 * `workerProcessGroup()` has joined. Rejects with RendezvousError naming the ranks that did not join
 * within the timeout, or with the first rank's failure (PermissionError when Deno refused to load the
 * module, TransportError when it could not be loaded or threw before joining); the Workers are then
 * terminated.
 *
 * @example
 * ```ts
 * import { spawnWorkers } from "@choir/choir";
 * const group = await spawnWorkers(4, new URL("./rank.ts", import.meta.url));
 * console.log(await group.results());
 * await group.close();
 * ```
 */
export async function spawnWorkers(
  n: number,
  module: string | URL,
  opts: SpawnWorkersOptions = {},
): Promise<WorkerGroup> {
  if (!Number.isInteger(n) || n < 1) {
    throw new TransportError(`spawnWorkers needs a positive number of ranks, got ${n}`, {
      op: "spawnWorkers",
    });
  }
  const url = String(module);
  const group = new WorkerGroup(n, opts);
  const name = opts.name ?? crypto.randomUUID().slice(0, 8);
  try {
    // Rank 0 first, alone until it greets: the others then find the module loaded and checked,
    // instead of n Workers compiling (and under `deno test`, type-checking) it at once.
    group.start(0, url, name);
    await group.greeted(0);
    for (let r = 1; r < n; r++) group.start(r, url, name);
    await group.joined();
  } catch (e) {
    await group.close();
    throw e;
  }
  return group;
}
