/**
 * @module
 * The shared-memory transport for ranks on one host: one /dev/shm segment per group holding a byte ring
 * per ordered pair, futex doorbells, and a progress engine. Finding the segment is left to the store.
 */

import { ChoirError, InvalidArgumentError, TransportError } from "../../errors.ts";
import type { ArenaHost } from "../arena_host.ts";
import type { Store } from "../store/store.ts";
import type { Channel, Transport } from "../transport.ts";
import { attach } from "./attach.ts";
import { type ChannelHost, chunkBytesFor, ShmChannel } from "./channel.ts";
import { Doorbells } from "./doorbell.ts";
import { Engine } from "./engine.ts";
import {
  defaultArenaBytes,
  defaultRingBytes,
  type Layout,
  MAX_RING_BYTES,
  MIN_RING_BYTES,
  STATE_CLOSED,
} from "./layout.ts";
import { type Libc, libc } from "./libc.ts";
import { RunQueue } from "./run_queue.ts";
import { RingReader, RingWriter } from "./ring.ts";
import type { Segment } from "./segment.ts";
import { channelOnce } from "../channel_once.ts";
import { checkToken } from "../token.ts";

/** Options of {@link ShmTransport.create}. */
export interface ShmTransportOptions {
  /** This rank. */
  rank: number;
  /** Number of ranks (all on this host). */
  size: number;
  /** Store where rank 0 publishes the segment's name (prefix it per group). */
  store: Store;
  /** The job token; ranks holding another token are refused with AuthError. */
  token: string;
  /**
   * How long to wait for rank 0's segment and for a peer to attach, and how long a send or receive may
   * make no progress before it fails with CollectiveTimeoutError, in milliseconds.
   */
  timeoutMs: number;
  /** Group id (part of the segment's name). */
  group?: number;
  /** A recognisable part of the segment's name, e.g. the launcher's job id (default: none). */
  jobId?: string;
  /**
   * Bytes of each ring, a power of two from 4 KiB to 1 GiB; rank 0's value is used by all. Default:
   * 4 MiB, halved until all `size * (size - 1)` rings fit in 64 MiB (at least 64 KiB).
   */
  ringBytes?: number;
  /**
   * Bytes of the arena that same-host collectives use directly (see {@link ShmTransport.arena}); 0 for
   * none. Rank 0's value is used by all. Default: per-rank lines and slots plus double-buffered 1 MiB
   * chunks for every rank, `2 * size` MiB in all (none for one rank).
   */
  arenaBytes?: number;
  /** Rounds of plain polling before yielding the CPU while waiting (default 20). */
  spinPolls?: number;
  /** Rounds of polling after `sched_yield()` before sleeping on the futex (default 20). */
  yieldPolls?: number;
}

interface Waiter {
  timer: ReturnType<typeof setTimeout> | undefined;
  reject: (e: Error) => void;
}

/**
 * A {@link Transport} through shared memory between processes of one host. Create with
 * {@link ShmTransport.create}; every rank of the group must create one with the same store and token.
 * Needs `--allow-ffi` (libc through FFI) and Linux.
 */
export class ShmTransport implements Transport {
  /** Always `"shm"`. */
  readonly name = "shm";
  /** This rank. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  readonly #lib: Libc;
  readonly #segment: Segment;
  readonly #layout: Layout;
  readonly #words: Int32Array;
  readonly #bytes: Uint8Array;
  readonly #bells: Doorbells;
  readonly #engine: Engine;
  readonly #host: ChannelHost;
  readonly #timeoutMs: number;
  readonly #channels = new Map<number, Promise<ShmChannel>>();
  readonly #open: ShmChannel[] = [];
  readonly #waiters = new Set<Waiter>();
  #arena: ArenaHost | null = null;
  /** The machine's run queue, for the arena's waits (opened with the arena). */
  #runQueue: RunQueue | null = null;
  readonly #onUnload = () => {
    try {
      this.#segment.unlink();
    } catch { /* exiting anyway */ }
  };
  #closed: Error | null = null;

  private constructor(lib: Libc, segment: Segment, layout: Layout, opts: ShmTransportOptions) {
    this.#lib = lib;
    this.rank = opts.rank;
    this.size = opts.size;
    this.#segment = segment;
    this.#layout = layout;
    this.#timeoutMs = opts.timeoutMs;
    this.#words = new Int32Array(segment.buffer);
    this.#bytes = new Uint8Array(segment.buffer);
    this.#bells = new Doorbells(lib, layout, segment.base, this.#words, this.rank);
    this.#engine = new Engine(this.#bells, this.rank, () => lib.fn.sched_yield(), {
      spinPolls: opts.spinPolls ?? 20,
      yieldPolls: opts.yieldPolls ?? 20,
    });
    this.#host = {
      rank: this.rank,
      timeoutMs: opts.timeoutMs,
      chunkBytes: chunkBytesFor(layout.ringBytes),
      view: new DataView(segment.buffer),
      bells: this.#bells,
      kick: () => this.#engine.kick(),
      peerGone: (peer) => this.#peerGone(peer),
    };
    // If this process ends before every rank arrived, the name would outlive it: remove it on the way out.
    if (segment.linked) globalThis.addEventListener("unload", this.#onUnload);
  }

  /**
   * Attaches to the group's segment: rank 0 creates it and publishes its name in the store, the others
   * open it. Throws LibraryUnavailableError without FFI permission or libc, AuthError for a rank of
   * another job, RendezvousError for a second process claiming a rank already attached, TransportError
   * when the segment cannot be made or found.
   */
  static async create(opts: ShmTransportOptions): Promise<ShmTransport> {
    const { rank, size } = opts;
    const ctx = { rank, op: "shm.create" };
    checkToken(opts.token, ctx);
    if (!Number.isInteger(size) || size < 1 || !Number.isInteger(rank) || rank < 0 || rank >= size) {
      throw new InvalidArgumentError(`rank ${rank} is not in a group of ${size}`, ctx);
    }
    const arenaBytes = opts.arenaBytes ?? defaultArenaBytes(size);
    if (!Number.isInteger(arenaBytes) || arenaBytes < 0 || arenaBytes > 2 ** 31) {
      throw new InvalidArgumentError(`arenaBytes must be an integer from 0 to 2 GiB, got ${arenaBytes}`, ctx);
    }
    const ringBytes = opts.ringBytes ?? defaultRingBytes(size, arenaBytes);
    if (
      !Number.isInteger(ringBytes) || ringBytes < MIN_RING_BYTES || ringBytes > MAX_RING_BYTES ||
      (ringBytes & (ringBytes - 1)) !== 0
    ) {
      throw new InvalidArgumentError(
        `ringBytes must be a power of two from 4 KiB to 1 GiB, got ${ringBytes}`,
        ctx,
      );
    }
    const lib = libc();
    const { segment, layout } = await attach(lib, {
      rank,
      size,
      store: opts.store,
      token: opts.token,
      timeoutMs: opts.timeoutMs,
      group: opts.group ?? 0,
      jobId: opts.jobId,
      ringBytes,
      arenaBytes,
    });
    const t = new ShmTransport(lib, segment, layout, opts);
    for (let p = 0; p < size; p++) if (p !== rank) t.#bells.ring(p);
    return t;
  }

  /** The segment's name in /dev/shm (already unlinked once every rank has attached). */
  get segmentName(): string {
    return this.#segment.name;
  }

  /**
   * The arena region of the segment, for collectives that work in shared memory directly (every rank
   * of the group sees the same bytes), with this rank's doorbell; null when there is none or after
   * close. After close its views read zeros rather than crash, but nothing there moves any more.
   */
  arena(): ArenaHost | null {
    if (this.#closed || this.#layout.arenaBytes === 0) return null;
    if (this.#arena) return this.#arena;
    const bells = this.#bells;
    const lib = this.#lib;
    this.#runQueue = RunQueue.open(lib);
    this.#arena = {
      rank: this.rank,
      size: this.size,
      buffer: this.#segment.buffer,
      offset: this.#layout.arenaStart,
      bytes: this.#layout.arenaBytes,
      ring: (r) => bells.ring(r),
      snapshot: () => bells.snapshot(),
      sleepSync: (snap, ms) => bells.sleepSync(snap, ms),
      sleep: (snap, ms) => bells.sleep(snap, ms),
      yieldCore: () => void lib.fn.sched_yield(),
      crowded: () => this.#runQueue?.crowded(),
      alive: (r) => r === this.rank || this.#peerGone(r) === null,
      causeOf: (r, op) => this.#open.find((ch) => ch.peer === r)?.peerCause(op) ?? null,
    };
    return this.#arena;
  }

  /** The channel to `peer`, once that rank has attached to the segment. */
  channel(peer: number): Promise<Channel> {
    const owner = { rank: this.rank, size: this.size, closed: this.#closed, channels: this.#channels };
    return channelOnce(owner, peer, (p) => this.#connect(p));
  }

  /**
   * Closes every channel (pending operations reject with `reason` or TransportError), tells the peers,
   * and unmaps the segment (unlinking its name if that has not happened yet).
   */
  async close(reason?: Error): Promise<void> {
    if (this.#closed) return;
    const closed = reason ?? new TransportError("transport closed", { rank: this.rank, op: "close" });
    this.#closed = closed;
    this.#runQueue?.close();
    this.#runQueue = null;
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(closed);
    }
    this.#waiters.clear();
    for (const ch of this.#open) {
      // A failure is told to the peer in its ring (ShmChannel.abort); a plain close only closes.
      if (reason instanceof ChoirError) ch.abort(reason);
      else {ch.fail(
          new TransportError(`channel to rank ${ch.peer} was closed`, {
            rank: this.rank,
            peer: ch.peer,
            op: "close",
          }),
        );}
    }
    Atomics.store(this.#words, this.#layout.state(this.rank) >> 2, STATE_CLOSED);
    for (let p = 0; p < this.size; p++) if (p !== this.rank) this.#bells.ring(p);
    await this.#engine.stop();
    globalThis.removeEventListener("unload", this.#onUnload);
    try {
      this.#segment.unlink();
    } finally {
      this.#segment.unmap();
    }
  }

  async #connect(peer: number): Promise<ShmChannel> {
    await this.#whenAttached(peer);
    if (this.#closed) throw this.#closed;
    const l = this.#layout;
    const ch = new ShmChannel(
      this.#host,
      peer,
      new RingWriter(this.#words, this.#bytes, l, l.ring(this.rank, peer)),
      new RingReader(this.#words, this.#bytes, l, l.ring(peer, this.rank)),
    );
    this.#engine.add(ch);
    this.#open.push(ch);
    return ch;
  }

  /** Resolves once `peer` has registered in the segment; polls, since this happens once per peer. */
  #whenAttached(peer: number): Promise<void> {
    const idx = this.#layout.state(peer) >> 2;
    if (Atomics.load(this.#words, idx) !== 0) return Promise.resolve();
    const deadline = performance.now() + this.#timeoutMs;
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { timer: undefined, reject };
      let delay = 1;
      const poll = () => {
        if (this.#closed) return; // close() rejected it
        if (Atomics.load(this.#words, idx) !== 0) {
          this.#waiters.delete(w);
          resolve();
        } else if (performance.now() >= deadline) {
          this.#waiters.delete(w);
          reject(
            new TransportError(
              `rank ${peer} did not attach to the shared segment within ${this.#timeoutMs} ms`,
              {
                rank: this.rank,
                peer,
                op: "connect",
              },
            ),
          );
        } else {
          delay = Math.min(delay * 2, 20);
          w.timer = setTimeout(poll, delay);
        }
      };
      this.#waiters.add(w);
      w.timer = setTimeout(poll, delay);
    });
  }

  /**
   * Why `peer` can no longer take part, or null. A peer that attached holds its owner slot until its
   * process ends, however it ends and in whatever PID namespace it runs (owner_lock.ts), so no pid
   * is needed to tell; the pid is only named in the message.
   */
  #peerGone(peer: number): string | null {
    if (this.#closed) return `rank ${this.rank} closed its own transport`;
    const state = Atomics.load(this.#words, this.#layout.state(peer) >> 2);
    if (state === STATE_CLOSED) return `rank ${peer} closed its transport`;
    if (state === 0) return null; // not attached yet: nothing to watch
    if (this.#segment.held(peer)) return null;
    const pid = Atomics.load(this.#words, this.#layout.pid(peer) >> 2);
    return `rank ${peer} exited (pid ${pid} in its PID namespace)`;
  }
}
