/**
 * @module
 * A group's calls on host tensors, between the public face and the backends: each is checked
 * (`validate.ts`), gets its call record (sequence number, fingerprint fields), is routed once
 * (`route.ts`) and handed to the backend the route names. ProcessGroup issues these in its op queue;
 * the GPU backend's staging calls them too, with `after`. Nothing here waits or sends by itself.
 */

import { allocLike, bytesOf, type CpuTensor, type DType, type ReduceOp, sliceView } from "../dtype.ts";
import type { ArenaBackend } from "./arena/arena_backend.ts";
import { SMALL_PAYLOAD } from "./arena/shm_arena.ts";
import type { Backend, OpRun, Queued } from "./backend.ts";
import type { ChannelBackend } from "./channels/channel_backend.ts";
import { type Call, OpKind } from "./comm.ts";
import {
  type ObjectLimits,
  type Outgoing,
  outgoing,
  refusalError,
  Refused,
  unpackObject,
} from "./objects.ts";
import { DEFAULT_MAX_OBJECT_BYTES } from "../transports/limits.ts";
import type { OpQueue } from "./op_queue.ts";
import type {
  AllToAllOptions,
  BarrierOptions,
  ObjectOptions,
  OpOptions,
  P2POptions,
  ReduceOptions,
  RootObjectOptions,
  RootOptions,
} from "./options.ts";
import { copyOf } from "./reduce_steps.ts";
import type { Route, Router } from "./route.ts";
import { type ArgCheck, overlaps } from "./validate.ts";

/** What the host calls use of their group. */
export interface HostCallsOptions {
  /** This rank. */
  rank: number;
  /** Ranks in the group. */
  size: number;
  /** The group's default timeout, ms. */
  timeoutMs: number;
  /** The group's argument checks. */
  check: ArgCheck;
  /** The group's router. */
  router: Router;
  /** The group's op queue (its destroyed check). */
  queue: OpQueue;
  /** The channel backend. */
  channels: ChannelBackend;
  /** The arena backend, once connected on one host (else null). */
  arena: () => ArenaBackend | null;
}

/** The host-tensor calls of one group (see the module doc). */
export class HostCalls {
  /** This rank. */
  readonly rank: number;
  /** Ranks in the group. */
  readonly size: number;
  readonly #timeoutMs: number;
  readonly #check: ArgCheck;
  readonly #router: Router;
  readonly #queue: OpQueue;
  readonly #channels: ChannelBackend;
  readonly #arenaOf: () => ArenaBackend | null;
  #seq = 0;
  /**
   * The call record of the tiny allReduce path, refilled per call: that path runs only with the queue
   * idle, so no call still running holds it (the recorder copies its fields).
   */
  readonly #tinyCall: Call = {
    name: "allReduce",
    kind: OpKind.allReduce,
    dtype: "f32",
    count: 0,
    root: -1,
    seq: 0,
  };
  /**
   * Point-to-point sequence numbers by peer and direction, for the peers used so far: a rank of a large
   * group talks to few peers, and an array per group of N ranks made start-up O(N) per rank.
   */
  readonly #sendSeq = new Map<number, number>();
  readonly #recvSeq = new Map<number, number>();

  /** @param o what the calls use of their group. */
  constructor(o: HostCallsOptions) {
    this.rank = o.rank;
    this.size = o.size;
    this.#timeoutMs = o.timeoutMs;
    this.#check = o.check;
    this.#router = o.router;
    this.#queue = o.queue;
    this.#channels = o.channels;
    this.#arenaOf = o.arena;
  }

  get #arena(): ArenaBackend | null {
    return this.#arenaOf();
  }

  /** Every rank's `mine`, in rank order: the agreement round of newGroup and split. */
  exchange(name: string, kind: number, mine: Float64Array): Promise<Float64Array> {
    return this.#channels.exchange(this.#queued(this.#call(name, kind, "f64", mine.length, -1), {}), mine);
  }

  /** The list form of reduceScatter: one working copy of the inputs, the same collective. */
  reduceScatterList(output: CpuTensor, inputs: readonly CpuTensor[], opts: ReduceOptions): Promise<void> {
    const name = "reduceScatterList";
    const { dtype, op } = this.#check.reduction(name, output, opts);
    this.#check.list(name, inputs, output, dtype, "inputs");
    const len = output.length;
    const fill = () => {
      const work = allocLike(output, this.size * len);
      inputs.forEach((t, p) => bytesOf(sliceView(work, p * len, len)).set(bytesOf(t)));
      return work;
    };
    return this.#reduceScatterOn(name, output, null, fill, dtype, op, opts);
  }

  /** barrier. */
  barrier(opts: BarrierOptions): Promise<void> {
    const r = this.#run(
      this.#call("barrier", OpKind.barrier, "u8", 0, -1),
      this.#router.route("barrier", 0),
      opts,
    );
    return this.#backend(r).barrier(r);
  }

  /** The list form of gather (the same collective). */
  gatherList(outputs: readonly CpuTensor[] | null, input: CpuTensor, opts: RootOptions): Promise<void> {
    const name = "gatherList";
    const dtype = this.#check.dtype(name, input, opts.dtype);
    const root = this.#check.root(name, opts.root);
    if (this.rank === root) this.#check.list(name, outputs, input, dtype, "outputs");
    const r = this.#queued(this.#call(name, OpKind.gather, dtype, input.length, root), opts);
    return this.#channels.gather(r, input, this.rank === root ? outputs : null);
  }

  /** The list form of scatter (the same collective). */
  scatterList(output: CpuTensor, inputs: readonly CpuTensor[] | null, opts: RootOptions): Promise<void> {
    const name = "scatterList";
    const dtype = this.#check.dtype(name, output, opts.dtype);
    const root = this.#check.root(name, opts.root);
    if (this.rank === root) this.#check.list(name, inputs, output, dtype, "inputs");
    const r = this.#queued(this.#call(name, OpKind.scatter, dtype, output.length, root), opts);
    return this.#channels.scatter(r, output, this.rank === root ? inputs : null);
  }

  /** The list form of allGather (the same collective, through one staging buffer). */
  allGatherList(outputs: readonly CpuTensor[], input: CpuTensor, opts: OpOptions): Promise<void> {
    const name = "allGatherList";
    const dtype = this.#check.dtype(name, input, opts.dtype);
    this.#check.list(name, outputs, input, dtype, "outputs");
    // The same collective as allGather, so it takes the same route.
    const call = this.#call(name, OpKind.allGather, dtype, input.length, -1);
    const r = this.#run(call, this.#router.route("allGather", this.size * input.byteLength), opts);
    return this.#backend(r).allGatherList(r, outputs, input);
  }

  // The object collectives: msgpackr bytes, their sizes first. An object its own rank refuses (too
  // large, too deep, cyclic, a RegExp...) is told to every rank in the size round, so the call fails
  // alike everywhere and the group goes on; a size over this rank's cap is refused before allocating.

  /** broadcastObject. */
  async broadcastObject<T>(obj: T | null | undefined, opts: RootObjectOptions): Promise<T> {
    const name = "broadcastObject";
    const root = this.#check.root(name, opts.root);
    const limits = this.#objectLimits(name, opts);
    const mine = this.rank === root ? outgoing(obj, this.rank, name, limits) : null;
    const r = this.#queued(this.#call(name, OpKind.broadcastObject, "u8", -1, root), opts);
    const got = await this.#channels.broadcastBytes(r, mine, limits.maxBytes);
    if (got instanceof Refused) throw refusalError(got, this.rank, name, mine ?? undefined);
    return unpackObject<T>(got, this.rank, name, root, limits);
  }

  /** allGatherObject. */
  async allGatherObject<T>(obj: T, opts: ObjectOptions): Promise<T[]> {
    const name = "allGatherObject";
    const limits = this.#objectLimits(name, opts);
    const mine = outgoing(obj, this.rank, name, limits);
    const r = this.#queued(this.#call(name, OpKind.allGatherObject, "u8", -1, -1), opts);
    const all = await this.#channels.allGatherBytes(r, mine, limits.maxBytes);
    if (all instanceof Refused) throw refusalError(all, this.rank, name, mine);
    return all.map((b, p) => unpackObject<T>(b, this.rank, name, p, limits));
  }

  /** gatherObject. */
  async gatherObject<T>(obj: T, opts: RootObjectOptions): Promise<T[] | null> {
    const name = "gatherObject";
    const root = this.#check.root(name, opts.root);
    const limits = this.#objectLimits(name, opts);
    const mine = outgoing(obj, this.rank, name, limits);
    const r = this.#queued(this.#call(name, OpKind.gatherObject, "u8", -1, root), opts);
    const blocks = await this.#channels.gatherBytes(r, mine, limits.maxBytes);
    if (blocks instanceof Refused) throw refusalError(blocks, this.rank, name, mine);
    return blocks?.map((b, p) => unpackObject<T>(b, this.rank, name, p, limits)) ?? null;
  }

  /** scatterObject. */
  async scatterObject<T>(objs: readonly T[] | null, opts: RootObjectOptions): Promise<T> {
    const name = "scatterObject";
    const root = this.#check.root(name, opts.root);
    const limits = this.#objectLimits(name, opts);
    let packed: Outgoing[] | null = null;
    if (this.rank === root) {
      if (!Array.isArray(objs) || objs.length !== this.size) {
        throw this.#check.invalid(
          name,
          `the root needs a list of ${this.size} objects (one per rank), got ${
            Array.isArray(objs) ? `${objs.length}` : String(objs)
          }`,
        );
      }
      packed = objs.map((o) => outgoing(o, this.rank, name, limits));
    }
    const r = this.#queued(this.#call(name, OpKind.scatterObject, "u8", -1, root), opts);
    const got = await this.#channels.scatterBytes(r, packed, limits.maxBytes);
    if (got instanceof Refused) throw refusalError(got, this.rank, name, packed?.find((o) => o.refusal));
    return unpackObject<T>(got, this.rank, name, root, limits);
  }

  /** The size cap of an object call (`maxObjectBytes`, checked). */
  #objectLimits(name: string, opts: ObjectOptions): ObjectLimits & { maxBytes: number } {
    const maxBytes = opts.maxObjectBytes ?? DEFAULT_MAX_OBJECT_BYTES;
    if (typeof maxBytes !== "number" || !(maxBytes > 0)) {
      throw this.#check.invalid(name, `maxObjectBytes must be a positive number, got ${String(maxBytes)}`);
    }
    return { maxBytes };
  }

  /** allReduce of a host tensor. */
  allReduce(tensor: CpuTensor, opts: ReduceOptions, after?: Promise<void>): Promise<void> {
    const { dtype, op } = this.#check.reduction("allReduce", tensor, opts);
    const bytes = tensor.byteLength;
    const arena = this.#arena;
    // A tiny payload takes the call slots whatever memory it is in: no symmetric lookup for it.
    const route = this.#router.route(
      "allReduce",
      bytes,
      opts.algorithm,
      arena !== null && bytes > SMALL_PAYLOAD ? arena.isSymmetric(tensor) : undefined,
    );
    if (route.algorithm === "shm_small" && after === undefined && this.#queue.idle) {
      // The latency path: one reused call record, straight to the arena's tiny allReduce.
      this.#queue.checkAlive("allReduce");
      const call = this.#tinyCall;
      call.dtype = dtype;
      call.op = op;
      call.count = tensor.length;
      call.seq = this.#seq++;
      return arena!.allReduceTiny(call, tensor, opts.timeoutMs ?? this.#timeoutMs, opts.factor);
    }
    const r = this.#run(
      this.#call("allReduce", OpKind.allReduce, dtype, tensor.length, -1, op),
      route,
      opts,
      after,
    );
    return this.#backend(r).allReduce(r, tensor);
  }

  /** broadcast of a host tensor. */
  broadcast(tensor: CpuTensor, opts: RootOptions, after?: Promise<void>): Promise<void> {
    const dtype = this.#check.dtype("broadcast", tensor, opts.dtype);
    const root = this.#check.root("broadcast", opts.root);
    const route = this.#router.route("broadcast", tensor.byteLength, opts.algorithm);
    const r = this.#run(
      this.#call("broadcast", OpKind.broadcast, dtype, tensor.length, root),
      route,
      opts,
      after,
    );
    return this.#backend(r).broadcast(r, tensor);
  }

  /** reduce of a host tensor. */
  reduce(tensor: CpuTensor, opts: ReduceOptions & RootOptions, after?: Promise<void>): Promise<void> {
    const { dtype, op } = this.#check.reduction("reduce", tensor, opts);
    const root = this.#check.root("reduce", opts.root);
    const route = this.#router.route("reduce", tensor.byteLength, opts.algorithm);
    const r = this.#run(
      this.#call("reduce", OpKind.reduce, dtype, tensor.length, root, op),
      route,
      opts,
      after,
    );
    return this.#backend(r).reduce(r, tensor);
  }

  /** allGather of host tensors. */
  allGather(output: CpuTensor, input: CpuTensor, opts: OpOptions, after?: Promise<void>): Promise<void> {
    const dtype = this.#check.dtype("allGather", input, opts.dtype);
    this.#check.sameType("allGather", output, input, dtype, this.size * input.length, "output");
    const call = this.#call("allGather", OpKind.allGather, dtype, input.length, -1);
    const r = this.#run(call, this.#router.route("allGather", output.byteLength), opts, after);
    return this.#backend(r).allGather(r, output, input);
  }

  /** reduceScatter of host tensors (the input copied only where it must be). */
  reduceScatter(
    output: CpuTensor,
    input: CpuTensor,
    opts: ReduceOptions,
    after?: Promise<void>,
  ): Promise<void> {
    const { dtype, op } = this.#check.reduction("reduceScatter", input, opts);
    this.#check.sameType("reduceScatter", input, output, dtype, this.size * output.length, "input");
    return this.#reduceScatterOn("reduceScatter", output, input, () => copyOf(input), dtype, op, opts, after);
  }

  /** The reduce-scatter both forms share: `whole` is the input when it is one tensor, `fill` copies it. */
  #reduceScatterOn(
    name: string,
    output: CpuTensor,
    whole: CpuTensor | null,
    fill: () => CpuTensor,
    dtype: DType,
    op: ReduceOp,
    opts: ReduceOptions,
    after?: Promise<void>,
  ): Promise<void> {
    const call = this.#call(name, OpKind.reduceScatter, dtype, this.size * output.length, -1, op);
    const r = this.#run(
      call,
      this.#router.route("reduceScatter", this.size * output.byteLength, opts.algorithm),
      opts,
      after,
    );
    return this.#backend(r).reduceScatter(r, output, whole, fill);
  }

  /** gather into one tensor on the root. */
  gather(
    output: CpuTensor | null,
    input: CpuTensor,
    opts: RootOptions,
    after?: Promise<void>,
  ): Promise<void> {
    const dtype = this.#check.dtype("gather", input, opts.dtype);
    const root = this.#check.root("gather", opts.root);
    const blocks = this.#rootBlocks("gather", root, output, input, dtype, "output");
    const r = this.#queued(this.#call("gather", OpKind.gather, dtype, input.length, root), opts, after);
    return this.#channels.gather(r, input, blocks);
  }

  /** scatter from one tensor on the root. */
  scatter(
    output: CpuTensor,
    input: CpuTensor | null,
    opts: RootOptions,
    after?: Promise<void>,
  ): Promise<void> {
    const dtype = this.#check.dtype("scatter", output, opts.dtype);
    const root = this.#check.root("scatter", opts.root);
    const blocks = this.#rootBlocks("scatter", root, input, output, dtype, "input");
    const r = this.#queued(this.#call("scatter", OpKind.scatter, dtype, output.length, root), opts, after);
    return this.#channels.scatter(r, output, blocks);
  }

  /**
   * The root's one tensor (`whole`: gather's output, scatter's input) checked and cut into a block per
   * rank of `mine`'s length; null on the other ranks, where it is ignored.
   */
  #rootBlocks(
    name: string,
    root: number,
    whole: CpuTensor | null,
    mine: CpuTensor,
    dtype: DType,
    which: string,
  ): CpuTensor[] | null {
    if (this.rank !== root) return null;
    if (!whole) throw this.#check.invalid(name, `the root needs an ${which} tensor`);
    this.#check.sameType(name, whole, mine, dtype, this.size * mine.length, which);
    return this.#check.blocksOf(whole, mine.length);
  }

  /** All-to-all, with or without splits. */
  allToAll(
    output: CpuTensor,
    input: CpuTensor,
    opts: AllToAllOptions,
    after?: Promise<void>,
  ): Promise<void> {
    const name = "allToAll";
    const c = this.#check;
    const dtype = c.dtype(name, input, opts.dtype);
    if (output.constructor !== input.constructor) {
      throw c.invalid(name, "output and input have different element types");
    }
    const send = c.splits(name, input.length, opts.inputSplits, "inputSplits", "input");
    const recv = c.splits(name, output.length, opts.outputSplits, "outputSplits", "output");
    const me = this.rank;
    if (send.lengths[me] !== recv.lengths[me]) {
      throw c.invalid(
        name,
        `this rank sends itself ${send.lengths[me]} elements but expects ${recv.lengths[me]} from itself`,
      );
    }
    if (overlaps(output, input)) throw c.invalid(name, "output and input overlap");
    // Block sizes differ from pair to pair: each frame's byte count is what gets checked.
    const r = this.#queued(this.#call(name, OpKind.allToAll, dtype, -1, -1), opts, after);
    return this.#channels.allToAll(r, output, recv, input, send);
  }

  /** send to `dst`, at once (not queued behind collectives). */
  send(tensor: CpuTensor, opts: P2POptions & { dst: number }): Promise<void> {
    return this.#p2p("send", tensor, opts, opts.dst, this.#sendSeq);
  }

  /** recv from `src`, at once. */
  recv(tensor: CpuTensor, opts: P2POptions & { src: number }): Promise<void> {
    return this.#p2p("recv", tensor, opts, opts.src, this.#recvSeq);
  }

  /** A send or receive with `peer`, numbered per peer and direction (`seqs`), run on its pair link. */
  #p2p(
    name: "send" | "recv",
    tensor: CpuTensor,
    opts: P2POptions,
    peer: number,
    seqs: Map<number, number>,
  ): Promise<void> {
    const dtype = this.#check.dtype(name, tensor, opts.dtype);
    const p = this.#check.peer(name, peer, name === "send" ? "dst" : "src");
    const seq = seqs.get(p) ?? 0;
    seqs.set(p, seq + 1);
    const call = this.#call(name, OpKind.p2p, dtype, tensor.length, opts.tag ?? 0, undefined, seq);
    return this.#channels.p2p(
      this.#queued(call, opts),
      p,
      (comm, q) => name === "send" ? comm.send(q, call, 0, tensor) : comm.recv(q, call, 0, tensor),
    );
  }

  // ---- the call record, the backends

  #call(
    name: string,
    kind: number,
    dtype: DType,
    count: number,
    root: number,
    op?: ReduceOp,
    seq?: number,
  ): Call {
    this.#queue.checkAlive(name);
    return { name, kind, dtype, count, root, op, seq: seq ?? this.#seq++ };
  }

  /** A call as its backend runs it. */
  #run(call: Call, route: Route, opts: OpOptions & { factor?: number }, after?: Promise<void>): OpRun {
    return { call, route, timeoutMs: opts.timeoutMs ?? this.#timeoutMs, after, factor: opts.factor };
  }

  /** A call of an op only the channels run (gather, scatter, all-to-all, p2p, objects). */
  #queued(call: Call, opts: OpOptions, after?: Promise<void>): Queued {
    return { call, timeoutMs: opts.timeoutMs ?? this.#timeoutMs, after };
  }

  /** The backend of a routed call. */
  #backend(r: OpRun): Backend {
    return r.route.backend === "arena" ? this.#arena! : this.#channels;
  }
}
