/**
 * @module
 * The rank side of one row: sets up the buffers of an op at one size, dtype, reduce op and placement,
 * makes one call of it (what the timed loop repeats), and counts the wrong elements this rank can see
 * after a call on a known pattern. Timing is measure.ts's job; which rows exist is cases.ts's.
 */

import type { CpuTensor, DType, ProcessGroup, ReduceOptions, SyncOptions } from "../collectives/mod.ts";
import { PREMUL_FACTOR } from "./catalog.ts";
import type { Case } from "./cases.ts";
import {
  allocTensor,
  clear,
  countWrong,
  fillPattern,
  moveValue,
  reduceInput,
  reduceResult,
  spoil,
} from "./values.ts";

/** One row's buffers and calls on one rank. */
export interface Prepared {
  /** One call of the op: the unit the timed loop repeats. */
  run(): Promise<unknown>;
  /**
   * Fills the inputs with the check pattern, makes one call, and returns how many elements of the
   * results on this rank are wrong. With `spoil`, one result element is spoiled before counting.
   */
  check(spoil: boolean): Promise<number>;
  /** Puts the buffers into the state the timed loop runs in (zeros for reductions into their input). */
  loopState(): void;
  /** Wrong elements on this rank after the timed loop (the loop's state must have kept). */
  loopCheck(): number;
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

const zero = () => 0;

/** Fills `t` (global offset `g0`) with rank `src`'s move pattern. */
function fillMove(t: CpuTensor, d: DType, src: number, g0: number): void {
  fillPattern(t, d, g0, (g) => moveValue(src, g));
}

/** Wrong elements of `t` (global offset `g0`) against rank `src`'s move pattern. */
function wrongMove(t: CpuTensor, d: DType, src: number, g0: number): number {
  return countWrong(t, d, g0, (g) => moveValue(src, g));
}

/** Wrong elements of an n-block result: block p must hold `src(p)`'s pattern at global `g(p)`. */
function wrongBlocks(
  t: CpuTensor,
  d: DType,
  n: number,
  chunk: number,
  src: (p: number) => number,
  g: (p: number) => number,
): number {
  let w = 0;
  for (let p = 0; p < n; p++) w += wrongMove(view(t, p * chunk, chunk), d, src(p), g(p));
  return w;
}

/** Wrong elements of a list of n results (as {@link wrongBlocks}). */
function wrongList(
  ts: readonly CpuTensor[],
  d: DType,
  src: (p: number) => number,
  g: (p: number) => number,
): number {
  return ts.reduce((w, t, p) => w + wrongMove(t, d, src(p), g(p)), 0);
}

/** Sets up row `c` on this rank. */
export async function prepare(pg: ProcessGroup, c: Case, bufs: Buffers): Promise<Prepared> {
  const r = pg.rank;
  const n = pg.size;
  const { dtype: d, count, chunk, root } = c;
  const inPlace = c.place === "in";
  const ro = reduceOptions(c);
  const isRoot = r === root;
  const list = (len: number) => Array.from({ length: n }, () => allocTensor(d, len));
  const redIn = (t: CpuTensor, g0: number) => fillPattern(t, d, g0, (g) => reduceInput(c.redop, r, g));
  const redOut = (t: CpuTensor, g0: number) => countWrong(t, d, g0, (g) => reduceResult(c.redop, d, n, g));
  const spoilIf = (on: boolean, t: CpuTensor | undefined) => {
    if (on && t) spoil(t, d);
  };

  switch (c.op) {
    case "allreduce": {
      const buf = await bufs.get("a", d, count);
      return {
        run: () => pg.allReduce(buf, ro),
        check: async (s) => {
          redIn(buf, 0);
          await pg.allReduce(buf, ro);
          spoilIf(s, buf);
          return redOut(buf, 0);
        },
        loopState: () => clear(buf),
        loopCheck: () => countWrong(buf, d, 0, zero),
      };
    }
    case "broadcast": {
      const buf = await bufs.get("a", d, count);
      const run = () => pg.broadcast(buf, { root, dtype: d });
      return {
        run,
        check: async (s) => {
          if (isRoot) fillMove(buf, d, root, 0);
          else clear(buf);
          await run();
          spoilIf(s, buf);
          return wrongMove(buf, d, root, 0);
        },
        loopState: () => {},
        loopCheck: () => wrongMove(buf, d, root, 0),
      };
    }
    case "reduce": {
      const buf = await bufs.get("a", d, count);
      const run = () => pg.reduce(buf, { ...ro, root });
      return {
        run,
        check: async (s) => {
          redIn(buf, 0);
          await run();
          spoilIf(s, buf);
          // Other ranks' tensors must be unchanged.
          return isRoot ? redOut(buf, 0) : countWrong(buf, d, 0, (g) => reduceInput(c.redop, r, g));
        },
        loopState: () => clear(buf),
        loopCheck: () => countWrong(buf, d, 0, zero),
      };
    }
    case "allgather": {
      const out = await bufs.get("a", d, count);
      const sep = await bufs.get("b", d, chunk);
      const inp = inPlace ? view(out, r * chunk, chunk) : sep;
      const run = () => pg.allGather(out, inp, { dtype: d });
      const verify = () => wrongBlocks(out, d, n, chunk, (p) => p, (p) => p * chunk);
      return {
        run,
        check: async (s) => {
          clear(out);
          fillMove(inp, d, r, r * chunk);
          await run();
          spoilIf(s, out);
          return verify();
        },
        loopState: () => {},
        loopCheck: verify,
      };
    }
    case "allgather_list": {
      const outs = list(chunk);
      const inp = await bufs.get("b", d, chunk);
      const run = () => pg.allGatherList(outs, inp, { dtype: d });
      const verify = () => wrongList(outs, d, (p) => p, (p) => p * chunk);
      return {
        run,
        check: async (s) => {
          outs.forEach(clear);
          fillMove(inp, d, r, r * chunk);
          await run();
          spoilIf(s, outs[0]);
          return verify();
        },
        loopState: () => {},
        loopCheck: verify,
      };
    }
    case "reduce_scatter": {
      const inp = await bufs.get("a", d, count);
      const sep = await bufs.get("b", d, chunk);
      const out = inPlace ? view(inp, r * chunk, chunk) : sep;
      const run = () => pg.reduceScatter(out, inp, ro);
      return {
        run,
        check: async (s) => {
          redIn(inp, 0);
          if (!inPlace) clear(out);
          await run();
          spoilIf(s, out);
          return redOut(out, r * chunk);
        },
        // In place, the result lands in the input: the loop runs on zeros, which stay zeros.
        loopState: () => {
          if (inPlace) clear(inp);
        },
        loopCheck: () => (inPlace ? countWrong(out, d, 0, zero) : redOut(out, r * chunk)),
      };
    }
    case "reduce_scatter_list": {
      const ins = list(chunk);
      const out = await bufs.get("b", d, chunk);
      const run = () => pg.reduceScatterList(out, ins, ro);
      return {
        run,
        check: async (s) => {
          ins.forEach((t, p) => redIn(t, p * chunk));
          clear(out);
          await run();
          spoilIf(s, out);
          return redOut(out, r * chunk);
        },
        loopState: () => {},
        loopCheck: () => redOut(out, r * chunk),
      };
    }
    case "alltoall": {
      const inp = await bufs.get("a", d, count);
      const out = await bufs.get("b", d, count);
      const run = () => pg.allToAll(out, inp, { dtype: d });
      // Block q of rank p's input goes to rank q, at global index q*chunk: rank r gets from every p.
      const verify = () => wrongBlocks(out, d, n, chunk, (p) => p, () => r * chunk);
      return {
        run,
        check: async (s) => {
          for (let q = 0; q < n; q++) fillMove(view(inp, q * chunk, chunk), d, r, q * chunk);
          clear(out);
          await run();
          spoilIf(s, out);
          return verify();
        },
        loopState: () => {},
        loopCheck: verify,
      };
    }
    case "gather": {
      const out = await bufs.get("a", d, count);
      const sep = await bufs.get("b", d, chunk);
      const inp = inPlace && isRoot ? view(out, r * chunk, chunk) : sep;
      const run = () => pg.gather(isRoot ? out : null, inp, { root, dtype: d });
      const verify = () => (isRoot ? wrongBlocks(out, d, n, chunk, (p) => p, (p) => p * chunk) : 0);
      return {
        run,
        check: async (s) => {
          clear(out);
          fillMove(inp, d, r, r * chunk);
          await run();
          spoilIf(s && isRoot, out);
          return verify();
        },
        loopState: () => {},
        loopCheck: verify,
      };
    }
    case "gather_list": {
      const outs = isRoot ? list(chunk) : null;
      const inp = await bufs.get("b", d, chunk);
      const run = () => pg.gatherList(outs, inp, { root, dtype: d });
      const verify = () => (outs ? wrongList(outs, d, (p) => p, (p) => p * chunk) : 0);
      return {
        run,
        check: async (s) => {
          outs?.forEach(clear);
          fillMove(inp, d, r, r * chunk);
          await run();
          spoilIf(s, outs?.[0]);
          return verify();
        },
        loopState: () => {},
        loopCheck: verify,
      };
    }
    case "scatter": {
      const inp = await bufs.get("a", d, count);
      const sep = await bufs.get("b", d, chunk);
      const out = inPlace && isRoot ? view(inp, r * chunk, chunk) : sep;
      const run = () => pg.scatter(out, isRoot ? inp : null, { root, dtype: d });
      return {
        run,
        check: async (s) => {
          // Block p of the root's input is rank p's: it carries p's pattern.
          if (isRoot) { for (let p = 0; p < n; p++) fillMove(view(inp, p * chunk, chunk), d, p, p * chunk); }
          if (!(inPlace && isRoot)) clear(out);
          await run();
          spoilIf(s, out);
          return wrongMove(out, d, r, r * chunk);
        },
        loopState: () => {},
        loopCheck: () => wrongMove(out, d, r, r * chunk),
      };
    }
    case "scatter_list": {
      const ins = isRoot ? list(chunk) : null;
      const out = await bufs.get("b", d, chunk);
      const run = () => pg.scatterList(out, ins, { root, dtype: d });
      return {
        run,
        check: async (s) => {
          ins?.forEach((t, p) => fillMove(t, d, p, p * chunk));
          clear(out);
          await run();
          spoilIf(s, out);
          return wrongMove(out, d, r, r * chunk);
        },
        loopState: () => {},
        loopCheck: () => wrongMove(out, d, r, r * chunk),
      };
    }
    case "sendrecv": {
      const send = await bufs.get("a", d, count);
      const recv = await bufs.get("b", d, count);
      const next = (r + 1) % n;
      const prev = (r + n - 1) % n;
      const run = () =>
        Promise.all([
          pg.isend(send, { dst: next, dtype: d }).wait(),
          pg.irecv(recv, { src: prev, dtype: d }).wait(),
        ]);
      return {
        run,
        check: async (s) => {
          fillMove(send, d, r, 0);
          clear(recv);
          await run();
          spoilIf(s, recv);
          return wrongMove(recv, d, prev, 0);
        },
        loopState: () => {},
        loopCheck: () => wrongMove(recv, d, prev, 0),
      };
    }
    case "barrier":
      return {
        run: () => pg.barrier(),
        check: async () => {
          await pg.barrier();
          return 0;
        },
        loopState: () => {},
        loopCheck: () => 0,
      };
    default:
      return prepareObject(pg, c);
  }
}

/** Object ops: the payload is a `Uint8Array` of the row's bytes, encoded and decoded by the library. */
function prepareObject(pg: ProcessGroup, c: Case): Prepared {
  const r = pg.rank;
  const n = pg.size;
  const { count, chunk, root } = c;
  const isRoot = r === root;
  const bytes = (len: number, src: number, g0: number) => {
    const t = new Uint8Array(len);
    fillMove(t, "u8", src, g0);
    return t;
  };
  /** Wrong bytes of a decoded value that should be `src`'s pattern of `len` bytes from `g0`. */
  const wrongValue = (v: unknown, len: number, src: number, g0: number): number =>
    v instanceof Uint8Array && v.length === len ? wrongMove(v, "u8", src, g0) : len;
  let last: unknown = null;
  let verify: (v: unknown) => number;
  let run: () => Promise<unknown>;
  switch (c.op) {
    case "broadcast_object": {
      const payload = isRoot ? bytes(count, root, 0) : null;
      run = async () => (last = await pg.broadcastObject(payload, { root }));
      verify = (v) => wrongValue(v, count, root, 0);
      break;
    }
    case "allgather_object": {
      const payload = bytes(chunk, r, r * chunk);
      run = async () => (last = await pg.allGatherObject(payload));
      verify = (v) =>
        Array.isArray(v) && v.length === n
          ? v.reduce((w: number, x, p) => w + wrongValue(x, chunk, p, p * chunk), 0)
          : count;
      break;
    }
    case "gather_object": {
      const payload = bytes(chunk, r, r * chunk);
      run = async () => (last = await pg.gatherObject(payload, { root }));
      verify = (v) =>
        !isRoot
          ? (v === null ? 0 : 1)
          : Array.isArray(v) && v.length === n
          ? v.reduce((w: number, x, p) => w + wrongValue(x, chunk, p, p * chunk), 0)
          : count;
      break;
    }
    case "scatter_object": {
      const payloads = isRoot ? Array.from({ length: n }, (_, p) => bytes(chunk, p, p * chunk)) : null;
      run = async () => (last = await pg.scatterObject(payloads, { root }));
      verify = (v) => wrongValue(v, chunk, r, r * chunk);
      break;
    }
    default:
      throw new Error(`no setup for op ${c.op}`);
  }
  const spoilLast = () => {
    const first = Array.isArray(last) ? last[0] : last;
    if (first instanceof Uint8Array) spoil(first, "u8");
  };
  return {
    run,
    check: async (s) => {
      await run();
      if (s) spoilLast();
      return verify(last);
    },
    loopState: () => {},
    loopCheck: () => verify(last),
  };
}
