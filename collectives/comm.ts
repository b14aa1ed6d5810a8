/**
 * @module
 * The communication context algorithms run on: this rank's channels to its peers and the
 * fingerprint of the collective in progress, stamped on every frame it sends and expects.
 */

import type { FrameHeader } from "../transports/frame.ts";
import type { Channel } from "../transports/transport.ts";
import { LazyChannel } from "../transports/lazy_channel.ts";
import { InvalidArgumentError } from "../errors.ts";
import { type CpuTensor, type DType, dtypeCode, REDUCE_OPS, type ReduceOp, reduceOpCode } from "../dtype.ts";

/** Collective kinds, the low byte of a frame's op code. */
export const OpKind = {
  allReduce: 1,
  broadcast: 2,
  reduce: 3,
  allGather: 4,
  reduceScatter: 5,
  barrier: 6,
  p2p: 7,
  gather: 8,
  scatter: 9,
  allToAll: 10,
  broadcastObject: 11,
  allGatherObject: 12,
  gatherObject: 13,
  scatterObject: 14,
  newGroup: 15,
  split: 16,
} as const;

/** Everything that identifies one call of a collective; identical on every participating rank. */
export interface Call {
  /** Name of the operation, for errors (`allReduce`, ...). */
  name: string;
  /** Collective kind code ({@link OpKind}). */
  kind: number;
  /** Sequence number of the call. */
  seq: number;
  /** Element type. */
  dtype: DType;
  /** Reduce op, for reducing collectives. */
  op?: ReduceOp;
  /** Element count of the collective (as the fingerprint defines it per op). */
  count: number;
  /** Root rank or p2p tag; -1 when unused. */
  root: number;
}

/** A rank's view of its group for one collective: channels by peer rank, and frame stamping. */
export class Comm {
  /** This rank within the group. */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly size: number;
  /** Group id stamped on frames. */
  readonly group: number;
  /** Bytes per pipelined chunk for large messages. */
  readonly chunkBytes: number;
  readonly #channelOf: (peer: number) => Channel | null;
  #scratch: ArrayBuffer[] = [];

  /**
   * Builds a context over `channels`: indexed by peer rank (null for self), or a function giving the
   * channel of a peer when first asked (a lazy group makes its channels as its algorithms reach them, so
   * a rank of a large group holds no object per peer it never talks to).
   */
  constructor(
    rank: number,
    size: number,
    group: number,
    channels: readonly (Channel | null)[] | ((peer: number) => Channel | null),
    chunkBytes: number,
  ) {
    this.rank = rank;
    this.size = size;
    this.group = group;
    this.#channelOf = typeof channels === "function" ? channels : (p) => channels[p] ?? null;
    this.chunkBytes = chunkBytes;
  }

  /**
   * A context over the subset `ranks` (global ranks, in the order that defines the sub-ranks), whose
   * frames carry group id `group` so they can never be mistaken for the parent's. This rank must be
   * in `ranks`.
   */
  sub(ranks: readonly number[], group: number): Comm {
    const me = ranks.indexOf(this.rank);
    if (me < 0) throw new InvalidArgumentError(`rank ${this.rank} is not in ${ranks}`, { rank: this.rank });
    const of = this.#channelOf;
    return new Comm(me, ranks.length, group, (p) => p < ranks.length ? of(ranks[p]) : null, this.chunkBytes);
  }

  #header(call: Call, chunk: number, bytes: number): FrameHeader {
    return {
      group: this.group,
      seq: call.seq,
      op: call.kind | (reduceOpCode(call.op) << 8),
      dtype: dtypeCode(call.dtype),
      count: call.count,
      root: call.root,
      chunk,
      bytes,
    };
  }

  #ch(peer: number): Channel {
    const c = this.#channelOf(peer);
    if (!c) throw new InvalidArgumentError(`no channel to rank ${peer}`, { rank: this.rank });
    return c;
  }

  /**
   * Opens a lazy link to `peer` for a point-to-point call: this rank may dial even though the peer has
   * not asked yet (a collective's first send waits for the higher rank's dial instead). Undefined where
   * the link is open or is not lazy.
   */
  openForP2P(peer: number): Promise<unknown> | undefined {
    const c = this.#ch(peer);
    return c instanceof LazyChannel && !c.opened ? c.ensure({}) : undefined;
  }

  /** Sends `data` as frame `chunk` of `call` to `peer`. */
  send(peer: number, call: Call, chunk: number, data: CpuTensor | Uint8Array): Promise<void> {
    const bytes = data instanceof Uint8Array
      ? data
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return this.#ch(peer).send(this.#header(call, chunk, bytes.byteLength), bytes);
  }

  /** Receives frame `chunk` of `call` from `peer` into `into` (exactly its size). */
  recv(peer: number, call: Call, chunk: number, into: CpuTensor | Uint8Array): Promise<void> {
    const bytes = into instanceof Uint8Array
      ? into
      : new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
    return this.#ch(peer).recv(this.#header(call, chunk, bytes.byteLength), bytes);
  }

  /**
   * Sends `data` to `peer` and receives the peer's frame of the same shape into `into` (a 2-rank
   * exchange, both stamped `chunk` of `call`): `undefined` when the channel finished both in this call.
   */
  exchange(
    peer: number,
    call: Call,
    chunk: number,
    data: CpuTensor,
    into: CpuTensor,
  ): Promise<void> | undefined {
    const out = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const inn = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
    const ch = this.#ch(peer);
    const h = this.#header(call, chunk, out.byteLength);
    if (ch.exchange) return ch.exchange(h, out, inn);
    return Promise.all([ch.send(h, out), ch.recv(h, inn)]).then(() => {});
  }

  /**
   * A reusable temporary of `length` elements with `like`'s array type, from scratch slot `slot`.
   * Collectives run one at a time, so each slot serves one buffer of the running collective.
   * Reusing memory matters for small collectives: a fresh ArrayBuffer per call cost more than
   * the rest of the call's JavaScript.
   */
  scratch<T extends CpuTensor>(slot: number, like: T, length: number): T {
    const bytes = length * like.BYTES_PER_ELEMENT;
    let buf = this.#scratch[slot];
    if (!buf || buf.byteLength < bytes) {
      buf = new ArrayBuffer(Math.max(bytes, 2 * (buf?.byteLength ?? 0), 256));
      this.#scratch[slot] = buf;
    }
    const ctor = like.constructor as new (b: ArrayBuffer, off: number, len: number) => T;
    return new ctor(buf, 0, length);
  }

  /** Elements per pipelined chunk for elements of `elemBytes` bytes (at least 1). */
  chunkElems(elemBytes: number): number {
    return Math.max(1, Math.floor(this.chunkBytes / elemBytes));
  }
}

/** A counter that async loops can wait on: `await p.reach(n)` resolves once `value >= n`. */
export class Progress {
  /** Current value. */
  value = 0;
  #waiters: { n: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  #error: unknown = null;

  /** Increments the value and wakes waiters whose target is reached. */
  advance(): void {
    this.value++;
    if (this.#waiters.length === 0) return;
    const still = [];
    for (const w of this.#waiters) {
      if (this.value >= w.n) w.resolve();
      else still.push(w);
    }
    this.#waiters = still;
  }

  /** Resolves when the value reaches `n`; rejects if {@link fail} was called. */
  reach(n: number): Promise<void> {
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.value >= n) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ n, resolve, reject }));
  }

  /** Rejects every current and future waiter with `e` (the other loop failed). */
  fail(e: unknown): void {
    this.#error = e;
    for (const w of this.#waiters) w.reject(e);
    this.#waiters = [];
  }
}

/**
 * Runs two cooperating loops (a sender and a receiver); the first failure rejects the whole, and
 * the other loop's waits are released with the same error so that nothing is left parked.
 */
export async function both(
  a: () => Promise<void>,
  b: () => Promise<void>,
  progress: Progress[],
): Promise<void> {
  const wrap = (f: () => Promise<void>) =>
    f().catch((e) => {
      for (const p of progress) p.fail(e);
      throw e;
    });
  await Promise.all([wrap(a), wrap(b)]);
}

/**
 * Runs any number of cooperating loops, like {@link both}: the first failure rejects the whole and
 * releases every wait on `progress` with the same error.
 */
export async function together(loops: (() => Promise<void>)[], progress: Progress[]): Promise<void> {
  const wrap = (f: () => Promise<void>) =>
    f().catch((e) => {
      for (const p of progress) p.fail(e);
      throw e;
    });
  await Promise.all(loops.map(wrap));
}

/** Balanced split of `count` elements into `n` segments: [start, length] of segment `i`. */
export function segment(count: number, n: number, i: number): [number, number] {
  const base = Math.floor(count / n);
  const extra = count % n;
  const start = i * base + Math.min(i, extra);
  return [start, base + (i < extra ? 1 : 0)];
}

const KIND_NAMES: Record<number, string> = Object.fromEntries(Object.entries(OpKind).map(([k, v]) => [v, k]));

/** An op's name for messages from its kind code and reduce-op code (255: none): `allReduce/sum`. */
export function opName(kind: number, reduceOp: number): string {
  return `${KIND_NAMES[kind] ?? kind}${reduceOp === 255 ? "" : `/${REDUCE_OPS[reduceOp] ?? reduceOp}`}`;
}
