/**
 * @module
 * The Worker transport: ranks are Deno Workers of one process, and every pair talks through byte
 * rings in a shared `WebAssembly.Memory` (the shm transport's layout, rings and channels), woken with
 * `Atomics.notify`. It needs no permission. Starting the Workers and handing out the memory is
 * left to worker/spawn.ts (main thread) and worker/rank.ts (in each Worker).
 */

import { ChoirError, InvalidArgumentError, TransportError } from "../../errors.ts";
import type { ArenaHost } from "../arena_host.ts";
import type { Channel, Transport } from "../transport.ts";
import { type ChannelHost, chunkBytesFor, ShmChannel } from "../shm/channel.ts";
import { Engine, SLEEP_MS } from "../shm/engine.ts";
import { type Layout, STATE_ALIVE, STATE_CLOSED } from "../shm/layout.ts";
import { RingReader, RingWriter } from "../shm/ring.ts";
import { AtomicsBells } from "./bells.ts";
import { libc } from "../shm/libc.ts";
import { layoutOf, type SegmentSpec } from "./segment.ts";
import type { SymmetricAllocation } from "../shm/symmetric.ts";
import { channelOnce } from "../channel_once.ts";

/** Where a Worker rank gets its group's shared memory (the hub on the main thread, through a port). */
export interface SegmentSource {
  /**
   * The memory of symmetric allocation `key`: `size` strides of `stride` bytes, one per rank, the
   * same memory for every member (made by the first to ask).
   */
  symmetricMemory(key: string, size: number, stride: number): Promise<WebAssembly.Memory>;
  /**
   * The memory of group `key`: the first member to ask makes it from `spec`, the others get the
   * same one. `rank` is the asker's rank in that group (the hub marks it gone if its Worker dies).
   */
  segment(key: string, spec: SegmentSpec, rank: number): Promise<WebAssembly.Memory>;
}

/** Options of {@link WorkerTransport.create}. */
export interface WorkerTransportOptions extends SegmentSpec {
  /** This rank. */
  rank: number;
  /** Where the group's memory comes from. */
  segments: SegmentSource;
  /** The group's key at the source (unique per group of the job). */
  key: string;
  /** How long a send or receive may make no progress, and how long to wait for a peer, in ms. */
  timeoutMs: number;
}

const NO_YIELD = () => {};

/**
 * `sched_yield()` through libc where this thread may use FFI (Worker ranks inherit the process's
 * permissions), as the shm transport does: with more ranks than cores, the rank being waited for
 * gets the core sooner. Never asks for the permission; without it waits poll, then nap.
 */
function coreYielder(): () => void {
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return NO_YIELD;
    const { fn } = libc();
    return () => void fn.sched_yield();
  } catch {
    return NO_YIELD;
  }
}

/**
 * A {@link Transport} between Worker ranks of one process through shared memory. Offers the arena
 * (see {@link WorkerTransport.arena}), so the same-host collectives run on it directly.
 */
export class WorkerTransport implements Transport {
  /** Always `"worker"`. */
  readonly name = "worker";
  /** This rank. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  readonly #memory: WebAssembly.Memory;
  readonly #layout: Layout;
  readonly #words: Int32Array;
  readonly #bells: AtomicsBells;
  readonly #engine: Engine;
  readonly #host: ChannelHost;
  readonly #timeoutMs: number;
  readonly #segments: SegmentSource;
  readonly #key: string;
  readonly #channels = new Map<number, Promise<ShmChannel>>();
  readonly #open: ShmChannel[] = [];
  readonly #yieldCore: () => void;
  #arena: ArenaHost | null = null;
  #closed: Error | null = null;
  // Deno.exit() in a Worker fires its unload: mark this rank gone so that peers stop waiting.
  readonly #onUnload = () => this.#markClosed();

  private constructor(memory: WebAssembly.Memory, layout: Layout, o: WorkerTransportOptions) {
    this.rank = o.rank;
    this.size = o.size;
    this.#memory = memory;
    this.#layout = layout;
    this.#timeoutMs = o.timeoutMs;
    this.#segments = o.segments;
    this.#key = o.key;
    this.#words = new Int32Array(memory.buffer);
    this.#bells = new AtomicsBells(layout, this.#words, this.rank);
    this.#yieldCore = coreYielder();
    // Without FFI there is no sched_yield: the engine goes from polling straight to its Atomics naps.
    this.#engine = new Engine(this.#bells, this.rank, this.#yieldCore, {
      spinPolls: 20,
      yieldPolls: this.#yieldCore === NO_YIELD ? 0 : 20,
    });
    this.#host = {
      rank: this.rank,
      timeoutMs: o.timeoutMs,
      chunkBytes: chunkBytesFor(layout.ringBytes),
      view: new DataView(memory.buffer),
      bells: this.#bells,
      kick: () => this.#engine.kick(),
      peerGone: (peer) => this.#peerGone(peer),
    };
    globalThis.addEventListener("unload", this.#onUnload);
  }

  /** Gets the group's memory from `o.segments` and registers this rank in it. */
  static async create(o: WorkerTransportOptions): Promise<WorkerTransport> {
    const { rank, size } = o;
    if (!Number.isInteger(size) || size < 1 || !Number.isInteger(rank) || rank < 0 || rank >= size) {
      throw new InvalidArgumentError(`rank ${rank} is not in a group of ${size}`, {
        rank,
        op: "worker.create",
      });
    }
    const spec: SegmentSpec = { size, ringBytes: o.ringBytes, arenaBytes: o.arenaBytes };
    const memory = await o.segments.segment(o.key, spec, rank);
    const layout = layoutOf(memory, size, rank);
    const t = new WorkerTransport(memory, layout, o);
    Atomics.store(t.#words, layout.state(rank) >> 2, STATE_ALIVE);
    for (let p = 0; p < size; p++) if (p !== rank) t.#bells.ring(p);
    return t;
  }

  /** The group's shared memory (its buffer is a SharedArrayBuffer). */
  get memory(): WebAssembly.Memory {
    return this.#memory;
  }

  /** The arena region of the group's memory, for the same-host collectives; null without one or after close. */
  arena(): ArenaHost | null {
    if (this.#closed || this.#layout.arenaBytes === 0) return null;
    if (this.#arena) return this.#arena;
    const bells = this.#bells;
    this.#arena = {
      rank: this.rank,
      size: this.size,
      buffer: this.#memory.buffer as unknown as ArrayBuffer,
      offset: this.#layout.arenaStart,
      bytes: this.#layout.arenaBytes,
      ring: (r) => bells.ring(r),
      snapshot: () => bells.snapshot(),
      sleepSync: (snap, ms) => bells.sleepSync(snap, ms),
      sleep: (snap, ms) => bells.sleep(snap, ms),
      yieldCore: this.#yieldCore,
      alive: (r) => r === this.rank || this.#peerGone(r) === null,
      causeOf: (r, op) => this.#open.find((ch) => ch.peer === r)?.peerCause(op) ?? null,
    };
    return this.#arena;
  }

  /**
   * Symmetric memory for `pg.alloc`: one shared memory holding every rank's array side by side (64 KiB
   * aligned strides), so the SIMD kernels reduce all of them in place. Every rank calls it in order.
   */
  async symmetric(index: number, bytes: number): Promise<SymmetricAllocation> {
    const stride = Math.ceil(bytes / 65536) * 65536;
    const memory = await this.#segments.symmetricMemory(`${this.#key}/sym${index}`, this.size, stride);
    return {
      index,
      bytes,
      memory,
      buffer: memory.buffer as unknown as ArrayBuffer,
      offsets: Array.from({ length: this.size }, (_, q) => q * stride),
      close: () => {},
    };
  }

  /** The channel to `peer`, once that rank has registered in the memory. */
  channel(peer: number): Promise<Channel> {
    const owner = { rank: this.rank, size: this.size, closed: this.#closed, channels: this.#channels };
    return channelOnce(owner, peer, (p) => this.#connect(p));
  }

  /** Closes every channel (pending operations reject), tells the peers, and drops the memory. */
  async close(reason?: Error): Promise<void> {
    if (this.#closed) return;
    this.#closed = reason ?? new TransportError("transport closed", { rank: this.rank, op: "close" });
    for (const ch of this.#open) {
      // A failure is told to the peer in its ring (ShmChannel.abort), as over shm between processes.
      if (reason instanceof ChoirError) ch.abort(reason);
      else {
        ch.fail(
          new TransportError(`channel to rank ${ch.peer} was closed`, {
            rank: this.rank,
            peer: ch.peer,
            op: "close",
          }),
        );
      }
    }
    this.#markClosed();
    await this.#engine.stop();
    globalThis.removeEventListener("unload", this.#onUnload);
  }

  #markClosed(): void {
    Atomics.store(this.#words, this.#layout.state(this.rank) >> 2, STATE_CLOSED);
    for (let p = 0; p < this.size; p++) if (p !== this.rank) this.#bells.ring(p);
  }

  async #connect(peer: number): Promise<ShmChannel> {
    await this.#whenAttached(peer);
    if (this.#closed) throw this.#closed;
    const l = this.#layout;
    const bytes = new Uint8Array(this.#memory.buffer);
    const ch = new ShmChannel(
      this.#host,
      peer,
      new RingWriter(this.#words, bytes, l, l.ring(this.rank, peer)),
      new RingReader(this.#words, bytes, l, l.ring(peer, this.rank)),
    );
    this.#engine.add(ch);
    this.#open.push(ch);
    return ch;
  }

  /** Resolves once `peer` has registered; naps on this rank's doorbell (registering rings it). */
  async #whenAttached(peer: number): Promise<void> {
    const idx = this.#layout.state(peer) >> 2;
    const deadline = performance.now() + this.#timeoutMs;
    while (Atomics.load(this.#words, idx) === 0) {
      if (this.#closed) throw this.#closed;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new TransportError(`rank ${peer} did not join the Worker group within ${this.#timeoutMs} ms`, {
          rank: this.rank,
          peer,
          op: "connect",
        });
      }
      const snap = this.#bells.snapshot();
      if (Atomics.load(this.#words, idx) !== 0) break;
      await this.#bells.sleep(snap, Math.min(left, SLEEP_MS));
    }
  }

  #peerGone(peer: number): string | null {
    if (this.#closed) return `rank ${this.rank} closed its own transport`;
    const state = Atomics.load(this.#words, this.#layout.state(peer) >> 2);
    return state === STATE_CLOSED ? `rank ${peer} closed its transport or its Worker ended` : null;
  }
}
