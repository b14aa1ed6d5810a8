/**
 * @module
 * The argument checks of ProcessGroup's calls: dtypes, lengths, roots, peers, per-rank lists and
 * all-to-all splits. Each failure is an InvalidArgumentError naming the rank, the op and what differed;
 * nothing here sends or queues anything.
 */

import { InvalidArgumentError } from "../errors.ts";
import {
  type CpuTensor,
  type DType,
  dtypeOf,
  isFloat,
  opSupports,
  REDUCE_OPS,
  ReduceOp,
  sliceView,
} from "../dtype.ts";
import type { ReduceOptions } from "./options.ts";
import type { Blocks } from "./channels/alltoall_pairwise.ts";

/** The checks of one rank of a group of `size` ranks. */
export class ArgCheck {
  /** @param rank this rank, named in every error. @param size ranks in the group. */
  constructor(readonly rank: number, readonly size: number) {}

  /** An InvalidArgumentError from this rank for `op`. */
  invalid(op: string, message: string): InvalidArgumentError {
    return new InvalidArgumentError(message, { rank: this.rank, op });
  }

  /** `t`'s dtype: a live typed array, its `tag` (required for a Uint16Array) agreeing with its type. */
  dtype(op: string, t: CpuTensor, tag: DType | undefined): DType {
    try {
      if (!ArrayBuffer.isView(t)) throw new InvalidArgumentError(`expected a typed array, got ${typeof t}`);
      if (t.buffer.byteLength === 0 && t.length > 0) {
        throw new InvalidArgumentError("the tensor's buffer is detached");
      }
      return dtypeOf(t, tag);
    } catch (e) {
      throw this.invalid(op, (e as Error).message);
    }
  }

  /** The dtype and reduce op of a reducing call: the op defined for the dtype, PREMUL_SUM with its factor. */
  reduction(name: string, t: CpuTensor, opts: ReduceOptions): { dtype: DType; op: ReduceOp } {
    const dtype = this.dtype(name, t, opts.dtype);
    const op = opts.op ?? ReduceOp.SUM;
    if (!REDUCE_OPS.includes(op)) throw this.invalid(name, `unknown reduce op ${String(op)}`);
    if (!opSupports(op, dtype)) throw this.invalid(name, `${op} is not defined for ${dtype}`);
    if (op === ReduceOp.PREMUL_SUM && (opts.factor === undefined || !isFloat(dtype))) {
      throw this.invalid(name, `premul_sum needs { factor } and a float dtype`);
    }
    return { dtype, op };
  }

  /** `big` holds `want` elements of `small`'s type (`which` names it: "output" or "input"). */
  sameType(name: string, big: CpuTensor, small: CpuTensor, dtype: DType, want: number, which: string): void {
    if (big.constructor !== small.constructor) {
      throw this.invalid(name, `output and input have different element types`);
    }
    if (big.length !== want) {
      throw this.invalid(
        name,
        `${which} has ${big.length} ${dtype} elements, expected ${want} (${this.size} ranks x ${small.length})`,
      );
    }
  }

  /** A per-rank list: `size` tensors of `like`'s type and length. */
  list(
    name: string,
    list: readonly CpuTensor[] | null | undefined,
    like: CpuTensor,
    dtype: DType,
    which: string,
  ): asserts list is readonly CpuTensor[] {
    if (!Array.isArray(list) || list.length !== this.size) {
      throw this.invalid(
        name,
        `${which} must hold ${this.size} tensors (one per rank), got ${
          Array.isArray(list) ? list.length : String(list)
        }`,
      );
    }
    list.forEach((t: CpuTensor, p: number) => {
      if (!ArrayBuffer.isView(t) || t.constructor !== like.constructor) {
        throw this.invalid(name, `${which}[${p}] is not a ${like.constructor.name}`);
      }
      if (t.length !== like.length) {
        throw this.invalid(name, `${which}[${p}] has ${t.length} ${dtype} elements, expected ${like.length}`);
      }
    });
  }

  /** The root rank (default 0). */
  root(op: string, root: number | undefined): number {
    return this.peer(op, root ?? 0, "root", true);
  }

  /** `p` as a rank of the group; this rank itself only where `selfOk`. */
  peer(op: string, p: number, what: string, selfOk = false): number {
    if (!Number.isInteger(p) || p < 0 || p >= this.size || (!selfOk && p === this.rank)) {
      throw this.invalid(
        op,
        `${what} ${p} is not a ${selfOk ? "" : "peer "}rank of this group (size ${this.size}${
          selfOk ? "" : `, this rank is ${this.rank}`
        })`,
      );
    }
    return p;
  }

  /** Where each rank's block of a tensor of `total` elements lies, from `splits` or equal shares. */
  splits(
    name: string,
    total: number,
    splits: readonly number[] | undefined,
    what: string,
    tensor: string,
  ): Blocks {
    const n = this.size;
    let lengths: number[];
    if (splits === undefined) {
      if (total % n !== 0) {
        throw this.invalid(
          name,
          `${tensor} has ${total} elements, not a multiple of ${n} ranks; pass ${what}`,
        );
      }
      lengths = new Array(n).fill(total / n);
    } else {
      if (!Array.isArray(splits) || splits.length !== n) {
        throw this.invalid(name, `${what} must hold ${n} sizes (one per rank), got ${splits}`);
      }
      const bad = splits.findIndex((x) => !Number.isInteger(x) || x < 0);
      if (bad >= 0) throw this.invalid(name, `${what}[${bad}] is ${splits[bad]}, not a size`);
      const sum = splits.reduce((a, b) => a + b, 0);
      if (sum !== total) {
        throw this.invalid(name, `${what} adds up to ${sum} elements but ${tensor} has ${total}`);
      }
      lengths = [...splits];
    }
    const starts = new Array<number>(n);
    for (let p = 0, at = 0; p < n; at += lengths[p++]) starts[p] = at;
    return { starts, lengths };
  }

  /** `t` cut into `size` views of `len` elements. */
  blocksOf<T extends CpuTensor>(t: T, len: number): T[] {
    return Array.from({ length: this.size }, (_, p) => sliceView(t, p * len, len));
  }
}

/** Whether two non-empty tensors share bytes. */
export function overlaps(a: CpuTensor, b: CpuTensor): boolean {
  return a.buffer === b.buffer && a.byteLength > 0 && b.byteLength > 0 &&
    a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}
