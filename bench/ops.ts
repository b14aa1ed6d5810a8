/**
 * @module
 * The rank side of one row: sets up the buffers of an op at one size, dtype, reduce op and placement,
 * makes one call of it (what the timed loop repeats), arms a checked call with its seed's data and
 * counts the wrong elements this rank can see after it. Timing is measure.ts's job; which rows exist is
 * cases.ts's. A test-only `mutant` makes the call misbehave, to prove the checks catch it.
 */

import type { CpuTensor, DType, ProcessGroup, ReduceOptions, SyncOptions } from "../collectives/mod.ts";
import { PREMUL_FACTOR } from "./catalog.ts";
import type { Case, Mutant } from "./cases.ts";
import {
  allocTensor,
  countWrong,
  fillWith,
  moveValue,
  poison,
  reduceInput,
  resultAt,
  spoil,
} from "./values.ts";

/** The object ops send up to 1 GiB (sizes go up to 1G): above the default 64 MiB cap of an object. */
const OBJECTS = { maxObjectBytes: 2 ** 31 };

/** One row's buffers and calls on one rank. */
export interface Prepared {
  /** One call of the op: the unit the timed loop repeats. */
  run(): Promise<unknown>;
  /**
   * Writes this rank's inputs for the checked call of `seed` and poisons every output element the
   * call must write (a value no input or result holds), so a call that does nothing, or
   * writes the right values in the wrong place, leaves wrong elements.
   */
  arm(seed: number): void;
  /**
   * How many elements of this rank's results are wrong for the call armed with `seed`. With `spoil`,
   * one result element is spoiled first (the `--corrupt` testing aid).
   */
  verify(seed: number, spoil: boolean): number;
}

/** Where a row's tensors come from: plain arrays, or `pg.alloc` symmetric memory reused across rows. */
export class Buffers {
  readonly #pg: ProcessGroup;
  readonly #alloc: boolean;
  readonly #pool = new Map<string, CpuTensor>();

  /** Buffers of `pg`; `alloc` takes them from `pg.alloc`. */
  constructor(pg: ProcessGroup, alloc: boolean) {
    this.#pg = pg;
    this.#alloc = alloc;
  }

  /**
   * A tensor of `length` elements of `dtype` for role `role` ("a" or "b": a row uses at most two).
   * With `pg.alloc` every rank asks for the same tensors in the same order, as `alloc` requires, and
   * a tensor is reused by later rows of the same role, dtype and length.
   */
  async get(role: "a" | "b", dtype: DType, length: number): Promise<CpuTensor> {
    if (!this.#alloc) return allocTensor(dtype, length);
    const key = `${role}/${dtype}/${length}`;
    let t = this.#pool.get(key);
    if (!t) {
      t = await this.#pg.alloc(dtype, length);
      this.#pool.set(key, t);
    }
    return t;
  }
}

/** A view of `length` elements of `t` from element `start`. */
function view(t: CpuTensor, start: number, length: number): CpuTensor {
  return t.subarray(start, start + length) as CpuTensor;
}

/** The library's name of a reduce op. */
function reduceOptions(c: Case): ReduceOptions & SyncOptions {
  const op = c.redop === "prod" ? "product" : c.redop === "none" ? "sum" : c.redop;
  return { dtype: c.dtype, op, factor: c.redop === "premul_sum" ? PREMUL_FACTOR : undefined };
}

/** The bytes of `t`. */
function bytesOf(t: CpuTensor): Uint8Array {
  return new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
}

/**
 * `run` as `mutant` makes it, from its second call on (the first check still passes, as a subtle
 * bug would): `noop` returns at once, `misplace` swaps the first and last half of `out` after the
 * call (right values, wrong place), `skipcopy` puts back what `out` held before the call.
 */
function mutate(
  run: () => Promise<unknown>,
  out: CpuTensor | undefined,
  mutant: Mutant,
): () => Promise<unknown> {
  let calls = 0;
  return async () => {
    if (++calls === 1) return await run();
    if (mutant === "noop") return;
    if (!out) return await run();
    const b = bytesOf(out);
    if (mutant === "skipcopy") {
      const before = b.slice();
      await run();
      b.set(before);
      return;
    }
    await run();
    const half = Math.floor(out.length / 2) * out.BYTES_PER_ELEMENT;
    const head = b.slice(0, half);
    b.copyWithin(0, b.length - half);
    b.set(head, b.length - half);
  };
}

/** The calls of one row before any mutant: `out` is the tensor a mutant tampers with. */
interface Calls extends Prepared {
  out?: CpuTensor;
}

/** Sets up row `c` on this rank (under the testing aid `mutant`, when given). */
export async function prepare(pg: ProcessGroup, c: Case, bufs: Buffers, mutant?: Mutant): Promise<Prepared> {
  const calls = await callsOf(pg, c, bufs);
  return mutant ? { ...calls, run: mutate(calls.run, calls.out, mutant) } : calls;
}

/** The calls of row `c` on this rank. */
async function callsOf(pg: ProcessGroup, c: Case, bufs: Buffers): Promise<Calls> {
  const r = pg.rank;
  const n = pg.size;
  const { dtype: d, count, chunk, root, redop } = c;
  const inPlace = c.place === "in";
  const ro = reduceOptions(c);
  const isRoot = r === root;
  const list = (len: number) => Array.from({ length: n }, () => allocTensor(d, len));
  /** Marks every element of an output as not yet written (a value no input or result holds). */
  const bad = (t: CpuTensor) => poison(t, d);
  /** Rank `src`'s data from global element `g0` under `seed` (ops that move data). */
  const fillMove = (t: CpuTensor, src: number, g0: number, seed: number) =>
    fillWith(t, d, g0, (g) => moveValue(src, g, seed));
  const wrongMove = (t: CpuTensor, src: number, g0: number, seed: number) =>
    countWrong(t, d, g0, (g) => moveValue(src, g, seed));
  /** This rank's contribution to a reduction, and the reduction's result. */
  const redIn = (t: CpuTensor, g0: number, seed: number) =>
    fillWith(t, d, g0, (g) => reduceInput(redop, r, g, seed));
  const wrongOwn = (t: CpuTensor, g0: number, seed: number) =>
    countWrong(t, d, g0, (g) => reduceInput(redop, r, g, seed));
  const wrongRed = (t: CpuTensor, g0: number, seed: number) =>
    countWrong(t, d, g0, resultAt(redop, d, n, seed));
  /** Block p of `t` must hold rank `src(p)`'s data at global `g(p)`. */
  const wrongBlocks = (t: CpuTensor, seed: number, src: (p: number) => number, g: (p: number) => number) => {
    let w = 0;
    for (let p = 0; p < n; p++) w += wrongMove(view(t, p * chunk, chunk), src(p), g(p), seed);
    return w;
  };
  const wrongList = (ts: readonly CpuTensor[], seed: number) =>
    ts.reduce((w, t, p) => w + wrongMove(t, p, p * chunk, seed), 0);
  const spoilIf = (on: boolean, t: CpuTensor | undefined) => {
    if (on && t) spoil(t, d);
  };

  switch (c.op) {
    case "allreduce": {
      const buf = await bufs.get("a", d, count);
      return {
        out: buf,
        run: () => pg.allReduce(buf, ro),
        arm: (seed) => redIn(buf, 0, seed),
        verify: (seed, s) => (spoilIf(s, buf), wrongRed(buf, 0, seed)),
      };
    }
    case "broadcast": {
      const buf = await bufs.get("a", d, count);
      return {
        out: buf,
        run: () => pg.broadcast(buf, { root, dtype: d }),
        arm: (seed) => (isRoot ? fillMove(buf, root, 0, seed) : bad(buf)),
        verify: (seed, s) => (spoilIf(s, buf), wrongMove(buf, root, 0, seed)),
      };
    }
    case "reduce": {
      const buf = await bufs.get("a", d, count);
      return {
        out: buf,
        run: () => pg.reduce(buf, { ...ro, root }),
        arm: (seed) => redIn(buf, 0, seed),
        // Other ranks' tensors must be unchanged.
        verify: (seed, s) => (spoilIf(s, buf), isRoot ? wrongRed(buf, 0, seed) : wrongOwn(buf, 0, seed)),
      };
    }
    case "allgather": {
      const out = await bufs.get("a", d, count);
      const sep = await bufs.get("b", d, chunk);
      const inp = inPlace ? view(out, r * chunk, chunk) : sep;
      return {
        out,
        run: () => pg.allGather(out, inp, { dtype: d }),
        arm: (seed) => {
          bad(out); // first: in place, the input is a block of the output
          fillMove(inp, r, r * chunk, seed);
        },
        verify: (seed, s) => (spoilIf(s, out), wrongBlocks(out, seed, (p) => p, (p) => p * chunk)),
      };
    }
    case "allgather_list": {
      const outs = list(chunk);
      const inp = await bufs.get("b", d, chunk);
      return {
        out: outs[0],
        run: () => pg.allGatherList(outs, inp, { dtype: d }),
        arm: (seed) => {
          outs.forEach(bad);
          fillMove(inp, r, r * chunk, seed);
        },
        verify: (seed, s) => (spoilIf(s, outs[0]), wrongList(outs, seed)),
      };
    }
    case "reduce_scatter": {
      const inp = await bufs.get("a", d, count);
      const sep = await bufs.get("b", d, chunk);
      const out = inPlace ? view(inp, r * chunk, chunk) : sep;
      return {
        out,
        run: () => pg.reduceScatter(out, inp, ro),
        // In place the output is this rank's block of the input: it cannot be zeroed, but it holds
        // this rank's contribution, which differs from the result.
        arm: (seed) => {
          redIn(inp, 0, seed);
          if (!inPlace) bad(out);
        },
        verify: (seed, s) => (spoilIf(s, out), wrongRed(out, r * chunk, seed)),
      };
    }
    case "reduce_scatter_list": {
      const ins = list(chunk);
      const out = await bufs.get("b", d, chunk);
      return {
        out,
        run: () => pg.reduceScatterList(out, ins, ro),
        arm: (seed) => {
          ins.forEach((t, p) => redIn(t, p * chunk, seed));
          bad(out);
        },
        verify: (seed, s) => (spoilIf(s, out), wrongRed(out, r * chunk, seed)),
      };
    }
    case "alltoall": {
      const inp = await bufs.get("a", d, count);
      const out = await bufs.get("b", d, count);
      return {
        out,
        run: () => pg.allToAll(out, inp, { dtype: d }),
        // Block q of rank p's input goes to rank q, at global index q*chunk: rank r gets from every p.
        arm: (seed) => {
          for (let q = 0; q < n; q++) fillMove(view(inp, q * chunk, chunk), r, q * chunk, seed);
          bad(out);
        },
        verify: (seed, s) => (spoilIf(s, out), wrongBlocks(out, seed, (p) => p, () => r * chunk)),
      };
    }
    case "gather": {
      const out = await bufs.get("a", d, count);
      const sep = await bufs.get("b", d, chunk);
      const inp = inPlace && isRoot ? view(out, r * chunk, chunk) : sep;
      return {
        out: isRoot ? out : undefined,
        run: () => pg.gather(isRoot ? out : null, inp, { root, dtype: d }),
        arm: (seed) => {
          bad(out);
          fillMove(inp, r, r * chunk, seed);
        },
        verify: (seed, s) => {
          if (!isRoot) return 0;
          spoilIf(s, out);
          return wrongBlocks(out, seed, (p) => p, (p) => p * chunk);
        },
      };
    }
    case "gather_list": {
      const outs = isRoot ? list(chunk) : null;
      const inp = await bufs.get("b", d, chunk);
      return {
        out: outs?.[0],
        run: () => pg.gatherList(outs, inp, { root, dtype: d }),
        arm: (seed) => {
          outs?.forEach(bad);
          fillMove(inp, r, r * chunk, seed);
        },
        verify: (seed, s) => (spoilIf(s, outs?.[0]), outs ? wrongList(outs, seed) : 0),
      };
    }
    case "scatter": {
      const inp = await bufs.get("a", d, count);
      const sep = await bufs.get("b", d, chunk);
      const out = inPlace && isRoot ? view(inp, r * chunk, chunk) : sep;
      return {
        out,
        run: () => pg.scatter(out, isRoot ? inp : null, { root, dtype: d }),
        arm: (seed) => {
          // Block p of the root's input is rank p's: it carries p's data.
          if (isRoot) {
            for (let p = 0; p < n; p++) {
              fillMove(view(inp, p * chunk, chunk), p, p * chunk, seed);
            }
          }
          if (!(inPlace && isRoot)) bad(out);
        },
        verify: (seed, s) => (spoilIf(s, out), wrongMove(out, r, r * chunk, seed)),
      };
    }
    case "scatter_list": {
      const ins = isRoot ? list(chunk) : null;
      const out = await bufs.get("b", d, chunk);
      return {
        out,
        run: () => pg.scatterList(out, ins, { root, dtype: d }),
        arm: (seed) => {
          ins?.forEach((t, p) => fillMove(t, p, p * chunk, seed));
          bad(out);
        },
        verify: (seed, s) => (spoilIf(s, out), wrongMove(out, r, r * chunk, seed)),
      };
    }
    case "sendrecv": {
      const send = await bufs.get("a", d, count);
      const recv = await bufs.get("b", d, count);
      const next = (r + 1) % n;
      const prev = (r + n - 1) % n;
      return {
        out: recv,
        run: () =>
          Promise.all([
            pg.isend(send, { dst: next, dtype: d }).wait(),
            pg.irecv(recv, { src: prev, dtype: d }).wait(),
          ]),
        arm: (seed) => {
          fillMove(send, r, 0, seed);
          bad(recv);
        },
        verify: (seed, s) => (spoilIf(s, recv), wrongMove(recv, prev, 0, seed)),
      };
    }
    case "barrier":
      return { run: () => pg.barrier(), arm: () => {}, verify: () => 0 };
    default:
      return callsOfObject(pg, c);
  }
}

/** Object ops: the payload is a `Uint8Array` of the row's bytes, encoded and decoded by the library. */
function callsOfObject(pg: ProcessGroup, c: Case): Calls {
  const r = pg.rank;
  const n = pg.size;
  const { count, chunk, root } = c;
  const isRoot = r === root;
  const bytes = (len: number, src: number, g0: number, seed: number) => {
    const t = new Uint8Array(len);
    fillWith(t, "u8", g0, (g) => moveValue(src, g, seed));
    return t;
  };
  /** Wrong bytes of a decoded value that should be `src`'s data of `len` bytes from `g0`. */
  const wrongValue = (v: unknown, len: number, src: number, g0: number, seed: number): number =>
    v instanceof Uint8Array && v.length === len
      ? countWrong(v, "u8", g0, (g) => moveValue(src, g, seed))
      : len;
  const wrongEvery = (v: unknown, seed: number): number =>
    Array.isArray(v) && v.length === n
      ? v.reduce((w: number, x, p) => w + wrongValue(x, chunk, p, p * chunk, seed), 0)
      : count;
  let last: unknown = null;
  let payload: Uint8Array | null = null;
  let payloads: Uint8Array[] | null = null;
  let run: () => Promise<unknown>;
  let arm: (seed: number) => void;
  let verify: (seed: number) => number;
  switch (c.op) {
    case "broadcast_object":
      run = async () => (last = await pg.broadcastObject(payload, { root, ...OBJECTS }));
      arm = (seed) => (payload = isRoot ? bytes(count, root, 0, seed) : null);
      verify = (seed) => wrongValue(last, count, root, 0, seed);
      break;
    case "allgather_object":
      run = async () => (last = await pg.allGatherObject(payload, OBJECTS));
      arm = (seed) => (payload = bytes(chunk, r, r * chunk, seed));
      verify = (seed) => wrongEvery(last, seed);
      break;
    case "gather_object":
      run = async () => (last = await pg.gatherObject(payload, { root, ...OBJECTS }));
      arm = (seed) => (payload = bytes(chunk, r, r * chunk, seed));
      verify = (seed) => (isRoot ? wrongEvery(last, seed) : last === null ? 0 : 1);
      break;
    case "scatter_object":
      run = async () => (last = await pg.scatterObject(payloads, { root, ...OBJECTS }));
      arm = (
        seed,
      ) => (payloads = isRoot ? Array.from({ length: n }, (_, p) => bytes(chunk, p, p * chunk, seed)) : null);
      verify = (seed) => wrongValue(last, chunk, r, r * chunk, seed);
      break;
    default:
      throw new Error(`no setup for op ${c.op}`);
  }
  return {
    run,
    arm: (seed) => {
      last = null;
      arm(seed);
    },
    verify: (seed, s) => {
      const first = Array.isArray(last) ? last[0] : last;
      if (s && first instanceof Uint8Array) spoil(first, "u8");
      return verify(seed);
    },
  };
}
