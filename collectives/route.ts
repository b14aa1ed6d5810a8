/**
 * @module
 * The one routing decision of a group: which backend runs a collective (the shared arena when every
 * rank is on this host, else the channels) and with which algorithm and chunk size. The ops and
 * `explain()` both ask {@link Router.route}, so an explanation is always what runs. Pure: every rank
 * of a group gets the same answer from the same arguments.
 */

import { InvalidArgumentError } from "../errors.ts";
import {
  type Algorithm,
  ALGORITHMS,
  type Explanation,
  FORCIBLE_OPS,
  isAlgorithm,
  plan,
  planArena,
  planGather,
  type PlanInput,
  type PlanOp,
} from "./plan/plan.ts";
import { SMALL_PAYLOAD } from "./arena/shm_arena.ts";

/** Where and how a collective runs. */
export interface Route {
  /** The backend: the shared arena or the channel algorithms. */
  readonly backend: "arena" | "channels";
  /** The algorithm. */
  readonly algorithm: Algorithm;
  /** Bytes per pipelined chunk. */
  readonly chunkBytes: number;
}

/** What a call adds to the route's inputs. */
export interface RouteQuery {
  /** The algorithm the call forces (checked against the op's). */
  algorithm?: Algorithm;
  /**
   * The tensor lies inside this rank's array of a symmetric allocation (`pg.alloc`): a large same-host
   * allReduce runs in place (ranks that disagree on it fail at the arena's fingerprint check).
   */
  symmetric?: boolean;
}

/** What the router knows of its group. */
export interface RouterOptions {
  /** This rank, named in errors. */
  rank: number;
  /** Ranks in the group. */
  size: number;
  /** The transport's name (`tcp`, `shm`, `shm+tcp`, ...). */
  transport: string;
  /** Host index of every rank. */
  hostOf?: readonly number[];
  /** The group's chunk size (default 1 MiB). */
  chunkBytes?: number;
  /** The algorithm forced on the whole group (`CHOIR_ALGO`), where an op has it. */
  algorithm?: Algorithm;
  /** Fold reductions in rank order. */
  deterministic?: boolean;
  /** The group opens its links on first use (the plan then avoids algorithms with many peers a rank). */
  lazy?: boolean;
}

/** The routing of one group; memoises the channel plans (a plan per op and size, as torch's NCCL caches). */
export class Router {
  readonly #o: RouterOptions;
  readonly #plans = new Map<string, Route>();
  #arena: { small: Route; chunks: Route; symmetric: Route; barrier: Route } | null = null;

  /** @param o the group's routing inputs. */
  constructor(o: RouterOptions) {
    this.#o = o;
  }

  /** Once the group is connected: whether its ranks share an arena, and that arena's chunk size. */
  useArena(chunkBytes: number | null): void {
    const at = (algorithm: Algorithm): Route =>
      Object.freeze({ backend: "arena", algorithm, chunkBytes: chunkBytes! });
    this.#arena = chunkBytes === null ? null : {
      small: at("shm_small"),
      chunks: at("shm_chunks"),
      symmetric: at("shm_symmetric"),
      barrier: at("shm_small"),
    };
  }

  /**
   * Where `op` on `bytes` runs (allGather: the output's bytes; reduceScatter: the input's), with the
   * call's forced `algorithm`, for a tensor in `symmetric` memory or not. Positional arguments: this
   * runs on every call, and a tiny same-host collective feels an allocation.
   */
  route(op: PlanOp, bytes: number, algorithm?: Algorithm, symmetric?: boolean): Route {
    const forced = algorithm !== undefined || this.#o.algorithm !== undefined
      ? this.forced(op, algorithm)
      : undefined;
    return (forced === undefined ? this.#onArena(op, bytes, symmetric) : null) ??
      this.channels(op, bytes, forced);
  }

  /** `route()`'s choice with its reasons, predicted times and every candidate's. */
  explain(op: PlanOp, bytes: number, q?: RouteQuery): Explanation {
    const r = this.route(op, bytes, q?.algorithm, q?.symmetric);
    const input = this.#input(op, bytes, r.backend === "arena" ? undefined : this.forced(op, q?.algorithm));
    return r.backend === "arena" ? planArena(input, r.algorithm, r.chunkBytes) : this.#plan(input);
  }

  /** The algorithm gather and scatter (and the object forms' size rounds) run for `bytes` per rank. */
  gather(bytes: number): "binomial" | "linear" {
    return planGather(bytes, this.#o.size);
  }

  /** The algorithm forced on `op`: the call's, else the group's where it names one of op's. */
  forced(op: PlanOp, call: Algorithm | undefined): Algorithm | undefined {
    if (!FORCIBLE_OPS.includes(op)) return undefined;
    if (call !== undefined) {
      if (!isAlgorithm(call) || !ALGORITHMS[op].includes(call)) {
        throw new InvalidArgumentError(
          `${op} has no algorithm "${call}" (it has ${ALGORITHMS[op].join(", ")})`,
          {
            rank: this.#o.rank,
            op,
          },
        );
      }
      return call;
    }
    const group = this.#o.algorithm;
    return group !== undefined && ALGORITHMS[op].includes(group) ? group : undefined;
  }

  /** The arena's algorithm for `op`, or null where the arena does not run it (or there is none). */
  #onArena(op: PlanOp, bytes: number, symmetric: boolean | undefined): Route | null {
    const a = this.#arena;
    if (!a) return null;
    switch (op) {
      case "barrier":
        return a.barrier;
      case "allReduce":
        return bytes <= SMALL_PAYLOAD ? a.small : symmetric ? a.symmetric : a.chunks;
      // Broadcast: the arena at every size. Measured against the channels (2026-11-27, medians): 2 ranks
      // 32 KiB 6.3 vs 11.8 us, 512 KiB 47 vs 121 us, 2 MiB 186-221 vs 523 us, 8 MiB about equal; 4 ranks
      // 32 KiB 39 vs 87 us, 512 KiB 147 vs 315 us, 2 MiB 921 vs 1890 us.
      case "broadcast":
      case "reduce":
      case "reduceScatter":
      case "allGather":
        return bytes <= SMALL_PAYLOAD ? a.small : a.chunks;
    }
  }

  /** The channel plan for `op` on `bytes`, even where the arena would run it (memoised: plan() is pure). */
  channels(op: PlanOp, bytes: number, forced?: Algorithm): Route {
    const key = `${op}/${bytes}/${forced ?? ""}`;
    let r = this.#plans.get(key);
    if (!r) {
      const e = this.#plan(this.#input(op, bytes, forced));
      r = Object.freeze({ backend: "channels", algorithm: e.algorithm, chunkBytes: e.chunkBytes });
      if (this.#plans.size >= 1024) this.#plans.clear();
      this.#plans.set(key, r);
    }
    return r;
  }

  /** plan(), its errors naming this rank. */
  #plan(input: PlanInput): Explanation {
    try {
      return plan(input);
    } catch (err) {
      if (err instanceof InvalidArgumentError) {
        throw new InvalidArgumentError(err.message.replace(/^\[[^\]]*\] /, ""), {
          rank: this.#o.rank,
          op: input.op,
        });
      }
      throw err;
    }
  }

  #input(op: PlanOp, bytes: number, forced: Algorithm | undefined): PlanInput {
    const o = this.#o;
    return {
      op,
      bytes,
      n: o.size,
      transport: o.transport,
      hostOf: o.hostOf,
      chunkBytes: o.chunkBytes ?? 1 << 20,
      algorithm: forced,
      deterministic: o.deterministic ?? false,
      lazy: o.lazy ?? false,
    };
  }
}
