/**
 * @module
 * What the benchmark knows about each op, without running anything: its name and aliases, whether it
 * reduces, has a root, takes a dtype and a size, which placements (in-place, out-of-place) it has, how
 * many elements a row of a given size moves, and nccl-tests' bus-bandwidth factor. The rank side
 * (ops.ts), the tables, the plot and the comparison scripts all take these facts from here.
 */

import type { DType } from "../collectives/mod.ts";

/** Every op `deno task bench` can measure, in the order `--op all` runs them. */
export const OPS = [
  "allreduce",
  "broadcast",
  "reduce",
  "allgather",
  "allgather_list",
  "reduce_scatter",
  "reduce_scatter_list",
  "alltoall",
  "gather",
  "gather_list",
  "scatter",
  "scatter_list",
  "sendrecv",
  "barrier",
  "broadcast_object",
  "allgather_object",
  "gather_object",
  "scatter_object",
] as const;

/** One op of {@link OPS}. */
export type OpName = typeof OPS[number];

/** The reduce ops a row may use (`none` for ops that do not reduce). */
export const REDOPS = ["sum", "prod", "min", "max", "avg", "band", "bor", "bxor", "premul_sum"] as const;

/** One of {@link REDOPS}, or `none`. */
export type RedOp = typeof REDOPS[number] | "none";

/** How a row's buffers are placed: `in` = the result overwrites the input (nccl-tests' in-place). */
export type Placement = "in" | "out";

/** How the busbw factor scales: nccl-tests' conventions. */
type Bus = "allreduce" | "spread" | "one" | "none";

interface OpFacts {
  /** The op combines values (takes a reduce op). */
  reducing: boolean;
  /** The op has a root rank. */
  rooted: boolean;
  /** The op carries typed data (a dtype column); object ops carry bytes, barrier nothing. */
  typed: boolean;
  /** Rows have a size (barrier has not). */
  sized: boolean;
  /** Placements the API offers, the natural one first. */
  places: readonly Placement[];
  /** The row's size is the whole (n blocks) buffer, counts a multiple of n. */
  blocked: boolean;
  /** Bus factor kind. */
  bus: Bus;
}

const F = (
  reducing: boolean,
  rooted: boolean,
  typed: boolean,
  places: readonly Placement[],
  blocked: boolean,
  bus: Bus,
  sized = true,
): OpFacts => ({ reducing, rooted, typed, sized, places, blocked, bus });

const FACTS: Readonly<Record<OpName, OpFacts>> = {
  allreduce: F(true, false, true, ["in"], false, "allreduce"),
  broadcast: F(false, true, true, ["in"], false, "one"),
  reduce: F(true, true, true, ["in"], false, "one"),
  allgather: F(false, false, true, ["out", "in"], true, "spread"),
  allgather_list: F(false, false, true, ["out"], true, "spread"),
  reduce_scatter: F(true, false, true, ["out", "in"], true, "spread"),
  reduce_scatter_list: F(true, false, true, ["out"], true, "spread"),
  alltoall: F(false, false, true, ["out"], true, "spread"),
  gather: F(false, true, true, ["out", "in"], true, "spread"),
  gather_list: F(false, true, true, ["out"], true, "spread"),
  scatter: F(false, true, true, ["out", "in"], true, "spread"),
  scatter_list: F(false, true, true, ["out"], true, "spread"),
  sendrecv: F(false, false, true, ["out"], false, "one"),
  barrier: F(false, false, false, ["out"], false, "none", false),
  broadcast_object: F(false, true, false, ["out"], false, "one"),
  allgather_object: F(false, false, false, ["out"], true, "spread"),
  gather_object: F(false, true, false, ["out"], true, "spread"),
  scatter_object: F(false, true, false, ["out"], true, "spread"),
};

/** The facts of `op`. */
export function facts(op: OpName): Readonly<OpFacts> {
  return FACTS[op];
}

/**
 * The canonical name of an op as a user may type it: case, `_` and `-` do not matter, and the API's
 * camelCase names work (`allReduce`, `reduce-scatter`, `all_gather`, `allToAll`, `sendRecv` ...).
 * Returns undefined for an unknown name.
 */
export function opByName(name: string): OpName | undefined {
  const key = (s: string) => s.toLowerCase().replace(/[-_\s]/g, "");
  const k = key(name);
  return OPS.find((op) => key(op) === k);
}

/**
 * nccl-tests' bus-bandwidth factor of `op` over `n` ranks: allreduce 2(n-1)/n; reduce-scatter,
 * allgather, alltoall (n-1)/n; broadcast, reduce, sendrecv 1. Our choice for gather and scatter (and
 * the gathering object ops) is (n-1)/n too, as nccl-tests does: the root's link carries (n-1)/n of
 * the buffer. Barrier moves no bytes: 0.
 */
export function busFactor(op: OpName, n: number): number {
  switch (FACTS[op].bus) {
    case "allreduce":
      return (2 * (n - 1)) / n;
    case "spread":
      return (n - 1) / n;
    case "one":
      return 1;
    case "none":
      return 0;
  }
}

/** Element counts of one row. */
export interface Shape {
  /** Elements of the whole buffer the row's size names (nccl-tests' "count"). */
  count: number;
  /** Elements per rank block (`count / n` for blocked ops, else `count`). */
  chunk: number;
  /** Bytes of the whole buffer: what the size column shows and algbw divides. */
  bytes: number;
}

/**
 * The counts of `op` at a requested size of `bytes` with elements of `elemBytes` over `n` ranks.
 * Blocked ops (allgather, reduce-scatter, alltoall, gather, scatter) round the per-rank block up to
 * a whole element, so "8 B" of float32 at n=4 becomes 16 B; every library in `--compare` gets the
 * same counts.
 */
export function shapeOf(op: OpName, bytes: number, elemBytes: number, n: number): Shape {
  if (!FACTS[op].sized) return { count: 0, chunk: 0, bytes: 0 };
  const total = Math.max(1, Math.floor(bytes / elemBytes));
  if (!FACTS[op].blocked) return { count: total, chunk: total, bytes: total * elemBytes };
  const chunk = Math.max(1, Math.ceil(total / n));
  return { count: chunk * n, chunk, bytes: chunk * n * elemBytes };
}

/** Bytes per element of a dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  f32: 4,
  f64: 8,
  i32: 4,
  i64: 8,
  u8: 1,
  i8: 1,
  u32: 4,
  f16: 2,
  bf16: 2,
};

/** nccl-tests' name of each dtype (the `type` column). */
export const NCCL_TYPE: Readonly<Record<DType, string>> = {
  f32: "float",
  f64: "double",
  i32: "int32",
  i64: "int64",
  u8: "uint8",
  i8: "int8",
  u32: "uint32",
  f16: "half",
  bf16: "bfloat16",
};

/** Whether a dtype is a floating-point type. */
export function isFloatType(d: DType): boolean {
  return d === "f32" || d === "f64" || d === "f16" || d === "bf16";
}

/** Whether `redop` applies to `dtype` (bitwise ops need integers, premul_sum needs floats). */
export function redopFits(redop: RedOp, dtype: DType): boolean {
  if (redop === "band" || redop === "bor" || redop === "bxor") return !isFloatType(dtype);
  if (redop === "premul_sum") return isFloatType(dtype);
  return true;
}

/** The factor premul_sum rows multiply by (a power of two, so results stay exact). */
export const PREMUL_FACTOR = 0.5;
