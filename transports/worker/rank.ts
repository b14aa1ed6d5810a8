/**
 * @module
 * The Worker side of a Worker rank: whether this thread is one, the handshake with the main
 * thread's hub, and the link that forwards store calls and memory requests over a private port.
 * Building the process group on it is left to collectives/worker_group.ts.
 */

import { CollectiveTimeoutError, InvalidArgumentError, TransportError } from "../../errors.ts";
import type { Store } from "../store/store.ts";
import type { SegmentSource } from "./transport.ts";
import {
  fromWire,
  type InitMessage,
  type RankMessage,
  type Reply,
  type Request,
  type RequestBody,
  type StoreMethod,
  toWire,
  WORKER_NAME_PREFIX,
} from "./protocol.ts";
import type { SegmentSpec } from "./segment.ts";

/** Whether this code runs in a Worker started by `spawnWorkers()`. */
export function isWorkerRank(): boolean {
  const name = (globalThis as { name?: unknown }).name;
  return typeof name === "string" && name.startsWith(WORKER_NAME_PREFIX) &&
    typeof (globalThis as { postMessage?: unknown }).postMessage === "function";
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

/** This Worker's connection to the hub: its rank, its data, a Store and a SegmentSource. */
export class RankLink implements SegmentSource {
  /** This rank. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  /** Default timeout, ms. */
  readonly timeoutMs: number;
  /** What the spawner passed. */
  readonly data: unknown;
  /** Ring and arena sizes of the world group. */
  readonly spec: Omit<SegmentSpec, "size">;
  /** The job's store, served by the hub. */
  readonly store: Store;
  readonly #port: MessagePort;
  readonly #pending = new Map<number, Pending>();
  #next = 1;
  #closed = false;

  /** Wraps the hub's answer to the handshake. */
  constructor(init: InitMessage) {
    this.rank = init.rank;
    this.size = init.size;
    this.timeoutMs = init.timeoutMs;
    this.data = init.data;
    this.spec = init.spec;
    this.#port = init.port;
    this.#port.onmessage = (e: MessageEvent<Reply>) => {
      const p = this.#pending.get(e.data.id);
      if (!p) return;
      this.#pending.delete(e.data.id);
      if (e.data.ok) p.resolve(e.data.value);
      else p.reject(fromWire(e.data.error));
    };
    this.store = portStore(this);
  }

  /** Sends one request to the hub and waits for its reply. */
  request(req: RequestBody): Promise<unknown> {
    if (this.#closed) {
      return Promise.reject(new TransportError("the link to the main thread is closed", { rank: this.rank }));
    }
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#port.postMessage({ ...req, id } as Request);
    });
  }

  /** The shared memory of group `key` (see {@link SegmentSource}). */
  async segment(key: string, spec: SegmentSpec, rank: number): Promise<WebAssembly.Memory> {
    return await this.request({ op: "segment", key, spec, rank }) as WebAssembly.Memory;
  }

  /** The shared memory of symmetric allocation `key`: `size` strides of `stride` bytes (the first asker makes it). */
  async symmetricMemory(key: string, size: number, stride: number): Promise<WebAssembly.Memory> {
    return await this.request({ op: "symmetric", key, size, stride }) as WebAssembly.Memory;
  }

  /** Tells the hub this rank has joined. */
  joined(): void {
    post({ choir: "joined" });
  }

  /** Tells the hub this rank destroyed its world group. */
  left(): void {
    post({ choir: "left" });
  }

  /** Tells the hub this rank failed to join. */
  failed(e: unknown): void {
    post({ choir: "failed", error: toWire(e) });
  }

  /** Closes the port; pending requests reject. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#port.close();
    for (const p of this.#pending.values()) {
      p.reject(new TransportError("the link to the main thread was closed", { rank: this.rank }));
    }
    this.#pending.clear();
  }
}

function post(msg: RankMessage): void {
  (globalThis as unknown as { postMessage(m: unknown): void }).postMessage(msg);
}

function portStore(link: RankLink): Store {
  const call = (method: StoreMethod, ...args: unknown[]) => link.request({ op: "store", method, args });
  return {
    set: async (key, value) => void await call("set", key, value),
    get: async (key) => await call("get", key) as Uint8Array,
    add: async (key, amount) => await call("add", key, amount) as number,
    compareSet: async (key, expected, desired) =>
      await call("compareSet", key, expected, desired) as Uint8Array,
    wait: async (keys, timeoutMs) =>
      void await call("wait", keys, ...(timeoutMs === undefined ? [] : [timeoutMs])),
    multiGet: async (keys, timeoutMs) =>
      await call("multiGet", keys, ...(timeoutMs === undefined ? [] : [timeoutMs])) as Uint8Array[],
    // An AbortSignal cannot cross the port: only `background` goes (the hub's watch then leaves the
    // hub free to exit).
    watch: async (keys, timeoutMs, opts) =>
      await call("watch", keys, timeoutMs, { background: opts?.background === true }) as string[],
    check: async (keys) => await call("check", keys) as boolean,
    deleteKey: async (key) => await call("deleteKey", key) as boolean,
    numKeys: async () => await call("numKeys") as number,
    close: () => Promise.resolve(),
  };
}

/**
 * Greets the hub and resolves with this rank's link. A Worker is one rank, so its link is made
 * once and kept for the thread's life; later calls get the same one.
 */
export function joinHub(timeoutMs = 60_000): Promise<RankLink> {
  if (!isWorkerRank()) {
    return Promise.reject(
      new InvalidArgumentError("not a choir Worker rank: start this module with spawnWorkers()", {
        op: "workerProcessGroup",
      }),
    );
  }
  return link ??= new Promise<RankLink>((resolve, reject) => {
    const timer = setTimeout(() => {
      globalThis.removeEventListener("message", onInit);
      link = undefined;
      reject(
        new CollectiveTimeoutError("the main thread did not answer the Worker rank's hello", timeoutMs, {
          op: "workerProcessGroup",
        }),
      );
    }, timeoutMs);
    const onInit = (e: Event) => {
      const msg = (e as MessageEvent).data as InitMessage | undefined;
      if (msg?.choir !== "init") return;
      e.stopImmediatePropagation();
      clearTimeout(timer);
      globalThis.removeEventListener("message", onInit);
      resolve(new RankLink(msg));
    };
    globalThis.addEventListener("message", onInit);
    post({ choir: "hello" });
  });
}

// One per Worker thread: the thread is the rank (a main thread never sets it).
let link: Promise<RankLink> | undefined;
