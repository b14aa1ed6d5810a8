/**
 * @module
 * The channel backend: runs a group's collectives as message-passing algorithms over its transport's
 * channels (any transport), with the algorithm the router chose, under the op queue's timeout. It also
 * runs what only channels do: gather, scatter, all-to-all, point-to-point and the object collectives'
 * byte rounds. The algorithms are one per file beside it; `dispatch.ts` maps a route to one.
 */

import { allocLike, bytesOf, type CpuTensor, ReduceOp, sliceView } from "../../dtype.ts";
import type { Backend, OpRun, Queued } from "../backend.ts";
import type { Call, Comm } from "../comm.ts";
import type { OpQueue } from "../op_queue.ts";
import { contribution, copyOf, finishReduction } from "../reduce_steps.ts";
import type { Router } from "../route.ts";
import { overlaps } from "../validate.ts";
import { CollectiveMismatchError, CollectiveTimeoutError } from "../../errors.ts";
import { allGatherRing } from "./allgather_ring.ts";
import { allReduceDirect } from "./allreduce_direct.ts";
import type { HierarchicalComms } from "./allreduce_hierarchical.ts";
import { allToAllPairwise, type Blocks } from "./alltoall_pairwise.ts";
import { barrierDissemination } from "./barrier_dissemination.ts";
import { barrierTree } from "./barrier_tree.ts";
import { broadcastBinomial } from "./broadcast_binomial.ts";
import { runAllReduce, runBroadcast, runReduce, runReduceScatter } from "./dispatch.ts";
import { gatherBinomial } from "./gather_binomial.ts";
import { gatherLinear } from "./gather_linear.ts";
import { scatterBinomial } from "./scatter_binomial.ts";
import { scatterLinear } from "./scatter_linear.ts";
import { type Outgoing, Refused, sizeRefusal } from "../objects.ts";
import { LoopTurns } from "../loop_turns.ts";

/** A two-rank link of its own to one peer (see {@link ChannelBackend.p2p}). */
export interface PairLink {
  /** The pair's communication context. */
  comm: Comm;
  /** The peer's rank in it. */
  peer: number;
}

/** What the channel backend asks of its group. */
export interface ChannelGroup {
  /** This rank. */
  readonly rank: number;
  /** Ranks in the group. */
  readonly size: number;
  /** The group's op queue. */
  readonly queue: OpQueue;
  /** The group's router (the object forms route their byte rounds once the size is known). */
  readonly router: Router;
  /** Connects the group (first use); then {@link ChannelBackend.attach} has been called. */
  connect(): Promise<void>;
  /** The pair link to `peer`, opened on first use, or null where the group cannot open one. */
  pairOf(peer: number): Promise<PairLink | null>;
}

/**
 * Largest allreduce (bytes) that takes the latency path when the plan chose the direct exchange: the
 * TCP channel's one-call frames (channel.ts coalesces up to 32 KiB); larger ones gain nothing from it.
 */
const NOW_BYTES = 32 * 1024;
const RESOLVED: Promise<void> = Promise.resolve();

/** Settles like `p`, or rejects with the call's CollectiveTimeoutError once its timeout has passed. */
function withDeadline(p: Promise<void>, r: Queued, rank: number): Promise<void> {
  const ms = r.timeoutMs;
  if (!(ms > 0 && ms < 2 ** 31)) return p;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const { call } = r;
      reject(
        new CollectiveTimeoutError(`${call.name} #${call.seq} did not complete`, ms, { rank, op: call.name }),
      );
    }, ms);
    // Like the watchdog's timer: a deadline never keeps the process alive.
    Deno.unrefTimer(timer as unknown as number);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * `e`, naming the call where the link that noticed a mismatch could not (it knows the peer, not the
 * op); the op queue does the same for the calls it times.
 */
function withOp(e: unknown, call: Call, rank: number): unknown {
  if (!(e instanceof CollectiveMismatchError) || e.op !== undefined) return e;
  return new CollectiveMismatchError({ ...e.expected }, { ...e.received }, {
    rank,
    op: call.name,
    peer: e.peer,
    cause: e,
  });
}

/** What a rank announces in an object call's size round: its size, or its refusal code negated. */
function sizeOrRefusal(o: Outgoing): number {
  return o.refusal ? -o.refusal : o.bytes.length;
}

/** The channels of one group (see the module doc). */
export class ChannelBackend implements Backend {
  readonly #g: ChannelGroup;
  #comm: Comm | null = null;
  #hier: HierarchicalComms | null = null;
  #handshake: ((call: Call, timeoutMs: number) => Promise<void>) | null = null;
  /** When a run of calls that completed at once next lets the event loop turn. */
  readonly #turns = new LoopTurns();

  /** @param g the group it runs for. */
  constructor(g: ChannelGroup) {
    this.#g = g;
  }

  /**
   * Gives the backend its connected channels; `handshake` (same-host groups) shows each call's
   * fingerprint on the shared arena before it starts, so mixing the two backends is a mismatch at once.
   */
  attach(
    comm: Comm,
    hier: HierarchicalComms | null,
    handshake: ((call: Call, timeoutMs: number) => Promise<void>) | null,
  ): void {
    this.#comm = comm;
    this.#hier = hier;
    this.#handshake = handshake;
  }

  /** The communication context, once connected. */
  get comm(): Comm | null {
    return this.#comm;
  }

  /** Queues `body` after the group's earlier collectives and runs it under the call's timeout. */
  run(r: Queued, body: (comm: Comm) => Promise<void>): Promise<void> {
    const hs = this.#handshake;
    const checked = hs
      ? async (comm: Comm) => {
        await hs(r.call, r.timeoutMs);
        return body(comm);
      }
      : body;
    return this.#g.queue.order(r.after, () => this.#timed(r, checked));
  }

  /**
   * Point-to-point calls run at once (not queued behind collectives), so send+recv pairs can overlap.
   * Each pair of ranks talks over a two-rank group of its own, opened on first use (as torch's NCCL
   * backend does): a receive left waiting must never take a collective's frame on a shared link.
   */
  p2p(r: Queued, peer: number, body: (comm: Comm, peer: number) => Promise<void>): Promise<void> {
    return this.#timed(r, async (comm) => {
      const pair = await this.#g.pairOf(peer);
      const [c, q] = pair ? [pair.comm, pair.peer] : [comm, peer];
      const opening = c.openForP2P(q);
      if (opening) await opening; // only on a lazy link's first use: no extra microtask per call
      return body(c, q);
    });
  }

  allReduce(r: OpRun, tensor: CpuTensor): Promise<void> {
    const op = r.call.op!;
    const q = this.#g.queue;
    if (
      r.route.algorithm === "direct" && r.after === undefined && this.#comm !== null &&
      this.#handshake === null && tensor.byteLength <= NOW_BYTES && q.idle
    ) {
      // The latency path: no closure, no queue turn, no watchdog entry; see #directNow.
      try {
        q.check(r.call.name);
        const p = q.untimed(r.call, this.#directNow, r, tensor) ?? this.#turns.next();
        return p === undefined ? RESOLVED : q.track(p);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.run(r, async (comm) => {
      await runAllReduce(r.route, comm, this.#hier, r.call, contribution(op, r.call.dtype, r.factor, tensor));
      finishReduction(op, r.call.dtype, tensor, this.#g.size);
    });
  }

  /**
   * A small 2-rank allreduce run in the caller's turn: the exchange polls for the peer's frame for
   * the link's spin time, so with a peer on time the call is complete when this returns. A late one
   * continues asynchronously under a deadline of its own (this path keeps no watchdog entry).
   */
  readonly #directNow = (r: OpRun, tensor: CpuTensor): Promise<void> | undefined => {
    const { call } = r;
    const op = call.op!;
    const p = allReduceDirect(this.#comm!, call, contribution(op, call.dtype, r.factor, tensor));
    if (p === undefined) {
      finishReduction(op, call.dtype, tensor, this.#g.size);
      return undefined;
    }
    return withDeadline(p, r, this.#g.rank).then(
      () => finishReduction(op, call.dtype, tensor, this.#g.size),
      (e) => {
        throw withOp(e, call, this.#g.rank);
      },
    );
  };

  broadcast(r: OpRun, tensor: CpuTensor): Promise<void> {
    return this.run(r, (comm) => runBroadcast(r.route, comm, r.call, tensor));
  }

  reduce(r: OpRun, tensor: CpuTensor): Promise<void> {
    const { call } = r;
    const op = call.op!;
    const isRoot = this.#g.rank === call.root;
    return this.run(r, async (comm) => {
      // Other ranks' tensors are unchanged: they contribute a scaled copy for PREMUL_SUM.
      const input = contribution(op, call.dtype, r.factor, tensor, isRoot ? undefined : () => copyOf(tensor));
      await runReduce(r.route, comm, call, input);
      if (isRoot) finishReduction(op, call.dtype, tensor, this.#g.size);
    });
  }

  allGather(r: OpRun, output: CpuTensor, input: CpuTensor): Promise<void> {
    const at = this.#g.rank * input.length;
    return this.run(r, (comm) => {
      if (
        output.buffer !== input.buffer ||
        output.byteOffset + at * input.BYTES_PER_ELEMENT !== input.byteOffset
      ) {
        bytesOf(sliceView(output, at, input.length)).set(bytesOf(input));
      }
      return allGatherRing(comm, r.call, output);
    });
  }

  allGatherList(r: OpRun, outputs: readonly CpuTensor[], input: CpuTensor): Promise<void> {
    const len = input.length;
    return this.run(r, async (comm) => {
      const all = allocLike(input, this.#g.size * len);
      bytesOf(sliceView(all, this.#g.rank * len, len)).set(bytesOf(input));
      await allGatherRing(comm, r.call, all);
      outputs.forEach((t, p) => bytesOf(t).set(bytesOf(sliceView(all, p * len, len))));
    });
  }

  reduceScatter(r: OpRun, output: CpuTensor, whole: CpuTensor | null, fill: () => CpuTensor): Promise<void> {
    const op = r.call.op!;
    return this.run(r, async (comm) => {
      // A private copy when the input must be scaled, is a list, or overlaps the output.
      const own = whole === null || op === ReduceOp.PREMUL_SUM || overlaps(output, whole);
      const src = contribution(op, r.call.dtype, r.factor, own ? fill() : whole);
      await runReduceScatter(r.route, comm, r.call, output, src, own);
      finishReduction(op, r.call.dtype, output, this.#g.size);
    });
  }

  barrier(r: OpRun): Promise<void> {
    const tree = r.route.algorithm === "tree";
    return this.run(r, (comm) => tree ? barrierTree(comm, r.call) : barrierDissemination(comm, r.call));
  }

  /** gather of every rank's `input` into the root's `blocks` (null elsewhere). */
  gather(r: Queued, input: CpuTensor, blocks: readonly CpuTensor[] | null): Promise<void> {
    const binomial = this.#g.router.gather(input.byteLength) === "binomial";
    return this.run(
      r,
      (comm) =>
        binomial ? gatherBinomial(comm, r.call, input, blocks) : gatherLinear(comm, r.call, input, blocks),
    );
  }

  /** scatter of the root's `blocks` (null elsewhere) into every rank's `output`. */
  scatter(r: Queued, output: CpuTensor, blocks: readonly CpuTensor[] | null): Promise<void> {
    const binomial = this.#g.router.gather(output.byteLength) === "binomial";
    return this.run(
      r,
      (comm) =>
        binomial
          ? scatterBinomial(comm, r.call, output, blocks)
          : scatterLinear(comm, r.call, output, blocks),
    );
  }

  /** all-to-all: block p of `input` (at `send`) to rank p, rank p's block into `output` (at `recv`). */
  allToAll(r: Queued, output: CpuTensor, recv: Blocks, input: CpuTensor, send: Blocks): Promise<void> {
    return this.run(r, (comm) => allToAllPairwise(comm, r.call, output, recv, input, send));
  }

  /** Every rank's `mine`, in rank order (the agreement round of newGroup and split). */
  async exchange(r: Queued, mine: Float64Array): Promise<Float64Array> {
    const all = new Float64Array(this.#g.size * mine.length);
    all.set(mine, this.#g.rank * mine.length);
    await this.run(r, (comm) => allGatherRing(comm, r.call, all));
    return all;
  }

  // The object collectives' bytes: first their sizes (a small round), then exactly-sized blocks, in
  // one call. A rank that refused its own object sends a negative code instead of its size: every rank
  // that needs it learns so in the size round, and the call ends alike everywhere (`Refused`) with the
  // group intact. A size over this rank's cap is refused before allocating; that breaks the call.

  /** The root's bytes on every rank (`mine` null except on the root). */
  async broadcastBytes(r: Queued, mine: Outgoing | null, cap: number): Promise<Uint8Array | Refused> {
    const { call } = r;
    const root = call.root;
    let out: Uint8Array | Refused = mine?.bytes ?? new Uint8Array(0);
    await this.run(r, async (comm) => {
      const len = new Float64Array([mine ? sizeOrRefusal(mine) : 0]);
      await broadcastBinomial(comm, { ...call, dtype: "f64", count: 1 }, len);
      if (len[0] < 0) return void (out = new Refused(root, -len[0]));
      if (!mine) out = new Uint8Array(this.#admit(len[0], cap, root, call));
      const data = out as Uint8Array;
      await runBroadcast(
        this.#g.router.channels("broadcast", data.length),
        comm,
        { ...call, count: len[0] },
        data,
      );
    });
    return out;
  }

  /** Every rank's bytes, in rank order, each exactly its size (no padding to the largest). */
  async allGatherBytes(r: Queued, mine: Outgoing, cap: number): Promise<Uint8Array[] | Refused> {
    const { call } = r;
    const { rank, size } = this.#g;
    let out: Uint8Array[] | Refused = [];
    await this.run(r, async (comm) => {
      const lens = new Float64Array(size);
      lens[rank] = sizeOrRefusal(mine);
      await allGatherRing(comm, { ...call, dtype: "f64", count: 1 }, lens);
      const refused = lens.findIndex((l) => l < 0);
      if (refused >= 0) return void (out = new Refused(refused, -lens[refused]));
      const lengths = Array.from(lens, (l, p) => p === rank ? l : this.#admit(l, cap, p, call));
      const starts: number[] = [];
      let total = 0;
      for (const l of lengths) starts.push(total), total += l;
      const all = new Uint8Array(total);
      // Each rank sends its own block to every other: blocks of any size, each received in place.
      const send = { starts: new Array(size).fill(0), lengths: new Array(size).fill(mine.bytes.length) };
      await allToAllPairwise(comm, call, all, { starts, lengths }, mine.bytes, send);
      out = lengths.map((l, p) => all.subarray(starts[p], starts[p] + l));
    });
    return out;
  }

  /** Every rank's bytes on the root, in rank order (null elsewhere). */
  async gatherBytes(r: Queued, mine: Outgoing, cap: number): Promise<Uint8Array[] | null | Refused> {
    const { call } = r;
    const { rank, size } = this.#g;
    const isRoot = rank === call.root;
    const lens = new Float64Array(isRoot ? size : 0);
    let blocks: Uint8Array[] | null = null;
    await this.run(r, async (comm) => {
      const lenCall: Call = { ...call, dtype: "f64", count: 1 };
      const lenBlocks = isRoot ? Array.from({ length: size }, (_, p) => lens.subarray(p, p + 1)) : null;
      const own = new Float64Array([sizeOrRefusal(mine)]);
      if (this.#g.router.gather(8) === "binomial") await gatherBinomial(comm, lenCall, own, lenBlocks);
      else await gatherLinear(comm, lenCall, own, lenBlocks);
      // Only the root and the refusing rank know of a refusal: it sends nothing, the root takes nothing.
      blocks = isRoot
        ? Array.from(
          lens,
          (l, p) => new Uint8Array(l < 0 ? 0 : p === rank ? l : this.#admit(l, cap, p, call)),
        )
        : null;
      await gatherLinear(comm, call, mine.bytes, blocks);
    });
    if (mine.refusal) return new Refused(rank, mine.refusal);
    const refused = lens.findIndex((l) => l < 0);
    return refused >= 0 ? new Refused(refused, -lens[refused]) : blocks;
  }

  /** The root's `packed[r]` on rank r (`packed` null except on the root). */
  async scatterBytes(
    r: Queued,
    packed: readonly Outgoing[] | null,
    cap: number,
  ): Promise<Uint8Array | Refused> {
    const { call } = r;
    const root = call.root;
    const len = new Float64Array(1);
    let out: Uint8Array | Refused = new Uint8Array(0);
    await this.run(r, async (comm) => {
      const lenCall: Call = { ...call, dtype: "f64", count: 1 };
      // One refused object fails the whole call: every rank gets the refusal instead of a size.
      const refusal = packed?.find((o) => o.refusal)?.refusal ?? 0;
      const lenBlocks = packed
        ? packed.map((o) => Float64Array.of(refusal ? -refusal : o.bytes.length))
        : null;
      if (this.#g.router.gather(8) === "binomial") await scatterBinomial(comm, lenCall, len, lenBlocks);
      else await scatterLinear(comm, lenCall, len, lenBlocks);
      if (len[0] < 0) return void (out = new Refused(root, -len[0]));
      const mine = new Uint8Array(packed ? len[0] : this.#admit(len[0], cap, root, call));
      await scatterLinear(comm, call, mine, packed?.map((o) => o.bytes) ?? null);
      out = mine;
    });
    return out;
  }

  /** `bytes` announced by `peer`, or a PayloadRefusedError when over this rank's cap (before allocating). */
  #admit(bytes: number, cap: number, peer: number, call: Call): number {
    if (bytes > cap) throw sizeRefusal(bytes, cap, { rank: this.#g.rank, op: call.name, peer });
    return bytes;
  }

  /** Connects on first use, then runs `body` under the call's timeout and the monitor. */
  async #timed(r: Queued, body: (comm: Comm) => Promise<void>): Promise<void> {
    const q = this.#g.queue;
    q.check(r.call.name);
    if (!this.#comm) await this.#g.connect();
    const comm = this.#comm!;
    return await q.timed(r.call, r.timeoutMs, () => body(comm));
  }
}
