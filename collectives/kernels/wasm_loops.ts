/**
 * @module
 * The loop skeletons of the wasm kernels: four vectors per iteration, then one, then a scalar tail,
 * over byte pointers, built from a per-kernel spec. What each kernel computes is in `wasm_kernels.ts`.
 */

import { FunctionBuilder, Op, T, uleb, type ValType } from "./wasm_emitter.ts";

/** Temporaries of one function, allocated on first use. */
export class Temps {
  private readonly byKey = new Map<string, number>();
  /** Temps of the function `f` builds. */
  constructor(private readonly f: FunctionBuilder) {}
  /** A v128 local holding `c` in every i32 lane, set once at the top of the function. */
  splat(c: number): number {
    const k = `splat:${c >>> 0}`;
    let i = this.byKey.get(k);
    if (i === undefined) {
      i = this.f.local(T.v128);
      this.byKey.set(k, i);
      this.f.emitHead(...FunctionBuilder.v128I32x4([c, c, c, c]), Op.local_set, ...uleb(i));
    }
    return i;
  }
  /** The temp local `key` of `type`. */
  get(type: ValType, key: string): number {
    const k = `${type}:${key}`;
    let i = this.byKey.get(k);
    if (i === undefined) {
      i = this.f.local(type);
      this.byKey.set(k, i);
    }
    return i;
  }
}

/** Code that combines the two values on the stack into one. */
export type Combine = (f: FunctionBuilder, t: Temps) => void;

/** How one element is loaded, combined and stored in the scalar tail. */
export interface ScalarSpec {
  /** (address) -> value. */
  load: (f: FunctionBuilder) => void;
  /** (address, value) -> (). */
  store: (f: FunctionBuilder, t: Temps) => void;
  /** (a, b) -> op(a, b). */
  combine: Combine;
}

/** A binary kernel: element size, vector combine and scalar tail. */
export interface BinarySpec {
  /** Bytes of one element (the scalar step). */
  bytes: number;
  /** (a, b) -> op(a, b) on two v128 values. */
  vector: Combine;
  /** The scalar tail. */
  scalar: ScalarSpec;
}

const UNROLL = 4;

/** log2 of a power of two. */
function log2(n: number): number {
  return 31 - Math.clz32(n);
}

/** Emits `ptrs += step; rem -= step`. */
function advance(f: FunctionBuilder, ptrs: readonly number[], rem: number, step: number): void {
  for (const p of ptrs) f.get(p).i32(step).emit(Op.i32_add).set(p);
  f.get(rem).i32(step).emit(Op.i32_sub).set(rem);
}

/**
 * The loop skeleton shared by every kernel: `rem` bytes from the pointer locals, four vectors per
 * iteration, then one vector, then one element at a time. `vecBody(offset)` and `scalarBody()` emit
 * one step at the current pointers.
 */
function loops(
  f: FunctionBuilder,
  ptrs: readonly number[],
  rem: number,
  elemBytes: number,
  vecBody: (offset: number) => void,
  scalarBody: () => void,
): void {
  for (const [count, width] of [[UNROLL, 16 * UNROLL], [1, 16]]) {
    f.block(() =>
      f.loop(() => {
        f.get(rem).i32(width).emit(Op.i32_lt_u).brIf(1);
        for (let k = 0; k < count; k++) vecBody(16 * k);
        advance(f, ptrs, rem, width);
        f.br(0);
      })
    );
  }
  f.block(() =>
    f.loop(() => {
      f.get(rem).emit(Op.i32_eqz).brIf(1);
      scalarBody();
      advance(f, ptrs, rem, elemBytes);
      f.br(0);
    })
  );
}

/** The function `(dst, src, n)` computing `dst[i] = op(dst[i], src[i])` for `spec`. */
export function buildBinary(spec: BinarySpec): FunctionBuilder {
  const f = new FunctionBuilder([T.i32, T.i32, T.i32]);
  const t = new Temps(f);
  const [dst, src, n] = [0, 1, 2];
  const rem = f.local(T.i32);
  f.get(n).i32(log2(spec.bytes)).emit(Op.i32_shl).set(rem);
  loops(f, [dst, src], rem, spec.bytes, (off) => {
    f.get(dst);
    f.get(dst).v128Load(off);
    f.get(src).v128Load(off);
    spec.vector(f, t);
    f.v128Store(off);
  }, () => {
    f.get(dst);
    f.get(dst);
    spec.scalar.load(f);
    f.get(src);
    spec.scalar.load(f);
    spec.scalar.combine(f, t);
    spec.scalar.store(f, t);
  });
  return f;
}

/** A unary kernel `(ptr, n, x)`: `prologue` turns param 2 into the temps `vector` and `scalar` use. */
export interface UnarySpec {
  /** Bytes of one element. */
  bytes: number;
  /** Type of the parameter x. */
  param: ValType;
  /** Code run once before the loops (splats x into temps). */
  prologue: (f: FunctionBuilder, t: Temps) => void;
  /** (a) -> op(a, x) on one v128 value, or null for a scalar-only kernel. */
  vector: Combine | null;
  /** The scalar step; its `combine` takes one value. */
  scalar: ScalarSpec;
}

/** The function `(ptr, n, x)` computing `p[i] = op(p[i], x)` for `spec`. */
export function buildUnary(spec: UnarySpec): FunctionBuilder {
  const f = new FunctionBuilder([T.i32, T.i32, spec.param]);
  const t = new Temps(f);
  const [ptr, n] = [0, 1];
  const rem = f.local(T.i32);
  spec.prologue(f, t);
  f.get(n).i32(log2(spec.bytes)).emit(Op.i32_shl).set(rem);
  const vector = spec.vector;
  const scalarBody = () => {
    f.get(ptr);
    f.get(ptr);
    spec.scalar.load(f);
    spec.scalar.combine(f, t);
    spec.scalar.store(f, t);
  };
  if (vector === null) {
    f.block(() =>
      f.loop(() => {
        f.get(rem).emit(Op.i32_eqz).brIf(1);
        scalarBody();
        advance(f, [ptr], rem, spec.bytes);
        f.br(0);
      })
    );
    return f;
  }
  loops(f, [ptr], rem, spec.bytes, (off) => {
    f.get(ptr);
    f.get(ptr).v128Load(off);
    vector(f, t);
    f.v128Store(off);
  }, scalarBody);
  return f;
}

/** A combine that is one SIMD instruction. */
export const simd = (opcode: number): Combine => (f) => void f.simd(opcode);
/** A combine that is one core instruction. */
export const core = (opcode: number): Combine => (f) => void f.emit(opcode);

/** Scalar step with plain load/store opcodes (natural alignment hints) and `combine`. */
export function scalarOf(bytes: number, load: number, store: number, combine: Combine): ScalarSpec {
  const align = log2(bytes);
  return {
    load: (f) => void f.mem(load, align, 0),
    store: (f) => void f.mem(store, align, 0),
    combine,
  };
}
