/**
 * @module
 * The options of ProcessGroup's calls and its status record: plain types, shared by the public face
 * (`process_group.ts`), the route and the backends, which never import the ProcessGroup class itself.
 */

import type { CpuTensor, DType, ReduceOp } from "../dtype.ts";
import type { Algorithm } from "./plan/plan.ts";
import type { FlightRecorderSnapshot } from "./diagnostics/flight_recorder.ts";
import type { GpuOptions } from "./gpu/gpu_options.ts";

/** Options every operation accepts. */
export interface OpOptions {
  /** Element type; required for a `Uint16Array` (`"f16"` or `"bf16"`), checked otherwise. */
  dtype?: DType;
  /** Timeout of this call in milliseconds (default: the group's). */
  timeoutMs?: number;
  /** Return a {@link Work} at once instead of a promise (default false); see {@link AsyncOptions}. */
  async?: boolean;
  /** How GpuTensors move (IPC or staged, chunk size); ignored for CPU tensors. */
  gpu?: GpuOptions;
}

/**
 * `{ async: true }`: the call returns a {@link Work} at once instead of a promise. Collectives of a
 * group still run one at a time in the order they were called, so several may be in flight.
 */
export interface AsyncOptions {
  /** Return a {@link Work}. */
  async: true;
}

/** The default: the call returns a promise. */
export interface SyncOptions {
  /** Return a promise (the default). */
  async?: false;
}

/** Options of {@link ProcessGroup.barrier}. */
export type BarrierOptions = Omit<OpOptions, "dtype">;

/** Options of the object collectives (`broadcastObject`, `allGatherObject`, ...). */
export interface ObjectOptions extends Omit<OpOptions, "dtype"> {
  /**
   * Largest encoded object this rank sends or accepts, in bytes (default 64 MiB). A sender over it
   * refuses its object and every rank of the call throws PayloadRefusedError; a peer's object over it
   * is refused before anything of its size is allocated. Give every rank the same value.
   */
  maxObjectBytes?: number;
}

/** Options of the rooted object collectives. */
export interface RootObjectOptions extends ObjectOptions {
  /** The root rank (default 0). */
  root?: number;
}

/** Options of {@link ProcessGroup.allToAll}. */
export interface AllToAllOptions extends OpOptions {
  /**
   * Elements this rank sends to each rank, in rank order (sum: `input.length`; zeros allowed).
   * Default: `input.length / size` each.
   */
  inputSplits?: readonly number[];
  /**
   * Elements this rank receives from each rank, in rank order (sum: `output.length`). Default:
   * `output.length / size` each. Rank p's `inputSplits[q]` must equal rank q's `outputSplits[p]`.
   */
  outputSplits?: readonly number[];
}

/**
 * One point-to-point operation of {@link ProcessGroup.batchIsendIrecv}, like torch's `P2POp`.
 */
export interface P2POp {
  /** Send `tensor` to `peer`, or receive into it from `peer`. */
  op: "isend" | "irecv";
  /** The data to send, or the buffer to receive into (exactly the size the peer sends). */
  tensor: CpuTensor;
  /** The other rank. */
  peer: number;
  /** A tag both sides must agree on (default 0). */
  tag?: number;
  /** Element type; required for a `Uint16Array`. */
  dtype?: DType;
}

/** Options of {@link ProcessGroup.newGroup} and {@link ProcessGroup.split}. */
export interface NewGroupOptions {
  /** Default timeout of the new group's operations and of forming it, in ms (default: this group's). */
  timeoutMs?: number;
}

/** Options of reducing collectives. */
export interface ReduceOptions extends OpOptions {
  /** The reduction (default {@link ReduceOp.SUM}). */
  op?: ReduceOp;
  /** The scalar of {@link ReduceOp.PREMUL_SUM}. */
  factor?: number;
  /**
   * Run this algorithm for this call (every rank must pass the same); it must be one of the op's
   * (`ALGORITHMS`), else InvalidArgumentError. On one host it runs over the channels, not the arena.
   */
  algorithm?: Algorithm;
}

/** Options of rooted collectives. */
export interface RootOptions extends OpOptions {
  /** The root rank (default 0). */
  root?: number;
  /** Run this algorithm for this call (see {@link ReduceOptions.algorithm}). */
  algorithm?: Algorithm;
}

/** Options of {@link ProcessGroup.explain}. */
export interface ExplainOptions {
  /** Explain the run with this algorithm forced (as the call option of the same name). */
  algorithm?: Algorithm;
  /** The tensor comes from `pg.alloc` (symmetric memory: same-host allreduce runs in place). */
  symmetric?: boolean;
}

/** Options of point-to-point calls. */
export interface P2POptions extends OpOptions {
  /** A tag both sides must agree on (default 0). */
  tag?: number;
}

/** A group's state for `/status`: who it is and what it runs. */
export interface GroupStatus {
  /** This rank in the group. */
  rank: number;
  /** Ranks in the group. */
  size: number;
  /** Group id. */
  group: number;
  /** Transport name. */
  backend: string;
  /** Operations running now (flight recorder entries). */
  inFlight: unknown[];
  /** The flight recorder, or null when it is off. */
  flightRecorder: FlightRecorderSnapshot | null;
  /** Links this rank holds to the group's peers now (see `ProcessGroup.connections`). */
  connections: number;
  /** Whether the group opened every link up front (`eager`) or opens each on first use (`lazy`). */
  connectMode: "eager" | "lazy";
}

/** What a subgroup opener is asked to open. */
export interface SubgroupSpec {
  /** Unique name of the group in the job (its store prefix and the source of its id). */
  tag: string;
  /** Global rank of each member, in the new group's rank order. */
  ranks: readonly number[];
  /** This process's rank in the new group. */
  rank: number;
  /** Default timeout of the new group, in ms. */
  timeoutMs: number;
}
