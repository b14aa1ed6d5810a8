/**
 * @module
 * The rows of a run: the cross product of ops, dtypes, reduce ops, sizes and placements that a
 * {@link RunConfig} asks for, in the order they run. The parent and every rank compute the same list
 * from the same config, so a rank names a row by its index alone.
 */

import type { DType } from "../collectives/mod.ts";
import {
  DTYPE_BYTES,
  facts,
  type OpName,
  type Placement,
  type RedOp,
  redopFits,
  shapeOf,
} from "./catalog.ts";

/** `--place`: each op's natural form, only in-place, only out-of-place, or both where the API has both. */
export type PlaceMode = "default" | "in" | "out" | "both";

/** How every call after a row's first misbehaves under `--mutant` (a test-only hook proving the checks bite). */
export const MUTANTS = ["noop", "misplace", "skipcopy"] as const;

/** One of {@link MUTANTS}. */
export type Mutant = typeof MUTANTS[number];

/** What every process of a run (choir ranks and comparison scripts) is told to measure. */
export interface RunConfig {
  /** Ops, in order. */
  ops: OpName[];
  /** Requested sizes in bytes, ascending. */
  sizes: number[];
  /** Element types of typed ops. */
  dtypes: DType[];
  /** Reduce ops of reducing ops. */
  redops: RedOp[];
  /** Placements. */
  place: PlaceMode;
  /** Root of rooted ops. */
  root: number;
  /** Seconds of timed iterations per row. */
  budgetS: number;
  /** Seconds of untimed warm-up per row. */
  warmupS: number;
  /** Fewest timed iterations. */
  minIters: number;
  /** Most timed iterations. */
  maxIters: number;
  /** choir only: buffers from `pg.alloc` (shared memory). */
  alloc: boolean;
  /** Testing aid: spoil one element of every checked result on one rank, so `#wrong` must show it. */
  corrupt: boolean;
  /** Testing aid: every call after the first misbehaves this way, so `#wrong` must show it. */
  mutant?: Mutant;
}

/** One row to measure. */
export interface Case {
  /** Position in the run's list (the rank reports rows by it). */
  index: number;
  /** The op. */
  op: OpName;
  /** Element type (`u8` for the byte payloads of object ops and for barrier). */
  dtype: DType;
  /** Reduce op, or `none`. */
  redop: RedOp;
  /** Requested size, bytes. */
  size: number;
  /** Elements of the whole buffer. */
  count: number;
  /** Elements per rank block. */
  chunk: number;
  /** Bytes of the whole buffer (the size column). */
  bytes: number;
  /** Placement. */
  place: Placement;
  /** Root rank, or -1. */
  root: number;
}

/** The placements `op` runs under `mode` (empty when the op has none of them). */
export function placesFor(op: OpName, mode: PlaceMode): Placement[] {
  const has = facts(op).places;
  if (mode === "default") return [has[0]];
  if (mode === "both") return [...has].sort((a, b) => (a === b ? 0 : a === "out" ? -1 : 1));
  return has.includes(mode) ? [mode] : [];
}

/** Every row of `cfg` for a job of `n` ranks, in run order (op, dtype, redop, size, placement). */
export function enumerateCases(cfg: RunConfig, n: number): Case[] {
  const out: Case[] = [];
  const seen = new Set<string>();
  for (const op of cfg.ops) {
    const f = facts(op);
    if (op === "sendrecv" && n < 2) continue;
    const dtypes: DType[] = f.typed ? cfg.dtypes : ["u8"];
    for (const dtype of dtypes) {
      const redops: RedOp[] = f.reducing ? cfg.redops.filter((r) => redopFits(r, dtype)) : ["none"];
      for (const redop of redops) {
        for (const size of f.sized ? cfg.sizes : [0]) {
          const shape = shapeOf(op, size, DTYPE_BYTES[dtype], n);
          for (const place of placesFor(op, cfg.place)) {
            const key = `${op}/${dtype}/${redop}/${shape.bytes}/${place}`;
            if (seen.has(key)) continue; // two sizes that round to the same counts
            seen.add(key);
            out.push({
              index: out.length,
              op,
              dtype,
              redop,
              size,
              ...shape,
              place,
              root: f.rooted ? cfg.root : -1,
            });
          }
        }
      }
    }
  }
  return out;
}
