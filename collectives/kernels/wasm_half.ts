/**
 * @module
 * f16 and bf16 kernels in wasm: widen u16 lanes to f32, combine, round back to nearest even (NaN,
 * infinities, subnormals kept), written once for scalar i32 and i32x4 lanes. Loops are `wasm_loops.ts`'s.
 */

import { type FunctionBuilder, Op, Simd, T } from "./wasm_emitter.ts";
import {
  type BinarySpec,
  type Combine,
  core,
  type ScalarSpec,
  type Temps,
  type UnarySpec,
} from "./wasm_loops.ts";

/**
 * i32 lane arithmetic written once for both a scalar i32 and an i32x4 vector, so the half-float
 * conversions below exist in one copy. Comparisons give 0/1 (scalar) or lane masks (vector), and
 * `select` is `select` or `v128.bitselect`: the same (then, else, cond) order either way.
 */
class Lanes {
  constructor(readonly f: FunctionBuilder, readonly t: Temps, readonly vector: boolean) {}
  private op(scalar: number, vector: number): this {
    if (this.vector) this.f.simd(vector);
    else this.f.emit(scalar);
    return this;
  }
  tmp(key: string): number {
    return this.t.get(this.vector ? T.v128 : T.i32, key);
  }
  k(c: number): this {
    if (this.vector) this.f.get(this.t.splat(c));
    else this.f.i32(c);
    return this;
  }
  and(): this {
    return this.op(Op.i32_and, Simd.v128_and);
  }
  or(): this {
    return this.op(Op.i32_or, Simd.v128_or);
  }
  add(): this {
    return this.op(Op.i32_add, Simd.i32x4_add);
  }
  sub(): this {
    return this.op(Op.i32_sub, Simd.i32x4_sub);
  }
  gtS(): this {
    return this.op(Op.i32_gt_s, Simd.i32x4_gt_s);
  }
  ltS(): this {
    return this.op(Op.i32_lt_s, Simd.i32x4_lt_s);
  }
  shl(n: number): this {
    this.f.i32(n);
    return this.op(Op.i32_shl, Simd.i32x4_shl);
  }
  shrU(n: number): this {
    this.f.i32(n);
    return this.op(Op.i32_shr_u, Simd.i32x4_shr_u);
  }
  select(): this {
    return this.op(Op.select, Simd.v128_bitselect);
  }
  /** Reinterpret int lanes as f32 lanes (a no-op for vectors). */
  fromBits(): this {
    if (!this.vector) this.f.emit(Op.f32_reinterpret_i32);
    return this;
  }
  /** Reinterpret f32 lanes as int lanes (a no-op for vectors). */
  toBits(): this {
    if (!this.vector) this.f.emit(Op.i32_reinterpret_f32);
    return this;
  }
  fadd(): this {
    return this.op(Op.f32_add, Simd.f32x4_add);
  }
  fmul(): this {
    return this.op(Op.f32_mul, Simd.f32x4_mul);
  }
}

/** A half format: lanes of u16 bits (zero-extended) <-> f32 lanes. */
export interface HalfFormat {
  /** (u16 bits as i32 lanes) -> f32 lanes. */
  decode(l: Lanes): void;
  /** f32 lanes -> (u16 bits as i32 lanes), nearest even. */
  encode(l: Lanes): void;
}

/** bfloat16: the top half of an f32. */
export const BF16: HalfFormat = {
  decode: (l) => void l.shl(16).fromBits(),
  encode(l) {
    const x = l.tmp("x");
    l.toBits().f.set(x);
    // NaN: keep sign and top payload bits, force quiet
    l.f.get(x);
    l.shrU(16).k(0x40).or();
    // nearest even: x + 0x7fff + ((x >> 16) & 1), top half
    l.f.get(x).get(x);
    l.shrU(16).k(1).and().add().k(0x7fff).add().shrU(16);
    l.f.get(x);
    l.k(0x7fffffff).and().k(0x7f800000).gtS().select();
  },
};

/** IEEE binary16. */
export const F16: HalfFormat = {
  decode(l) {
    const h = l.tmp("h"), em = l.tmp("em");
    l.f.set(h).get(h);
    l.k(0x7fff).and().f.set(em);
    // infinities and NaNs: exponent all ones
    l.f.get(em);
    l.shl(13).k(0x7f800000).or();
    // normals and subnormals: shift into f32 position and rescale the exponent by 2^112
    l.f.get(em);
    l.shl(13).fromBits().k(0x77800000).fromBits().fmul().toBits();
    l.f.get(em);
    l.k(0x7bff).gtS().select();
    l.f.get(h);
    l.k(0x8000).and().shl(16).or().fromBits();
  },
  encode(l) {
    const x = l.tmp("x"), a = l.tmp("a");
    l.toBits().f.set(x).get(x);
    l.k(0x7fffffff).and().f.set(a);
    // too large: infinity, or a quiet NaN
    l.k(0x7e00).k(0x7c00).f.get(a);
    l.k(0x7f800000).gtS();
    l.select();
    // below the smallest normal: adding 0.5 rounds to a multiple of 2^-24 (nearest even)
    l.f.get(a);
    l.fromBits().k(0x3f000000).fromBits().fadd().toBits().k(0x3f000000).sub();
    // normal: rebias the exponent, round the 13 dropped bits to nearest even
    l.f.get(a);
    l.shrU(13).k(1).and().f.get(a);
    l.add().k(0xc8000fff).add().shrU(13);
    l.f.get(a);
    l.k(0x38800000).ltS().select();
    l.f.get(a);
    l.k(0x477fffff).gtS().select();
    l.f.get(x);
    l.shrU(16).k(0x8000).and().or();
  },
};

/** The f32 op both lane kinds use: [scalar opcode, vector opcode]. */
export type FloatOp = readonly [number, number];
/** f32 add. */
export const F_SUM: FloatOp = [Op.f32_add, Simd.f32x4_add];
/** f32 multiply. */
export const F_MUL: FloatOp = [Op.f32_mul, Simd.f32x4_mul];
/** f32 minimum (NaN-propagating, -0 < +0). */
export const F_MIN: FloatOp = [Op.f32_min, Simd.f32x4_min];
/** f32 maximum (NaN-propagating, -0 < +0). */
export const F_MAX: FloatOp = [Op.f32_max, Simd.f32x4_max];
/** f32 divide. */
export const F_DIV: FloatOp = [Op.f32_div, Simd.f32x4_div];

function halfScalar(fmt: HalfFormat, combine: Combine): ScalarSpec {
  return {
    load: (f) => void f.mem(Op.i32_load16_u, 1, 0),
    combine: (f, t) => {
      // (a bits, b bits) -> f32 result; decode each through a temp
      const l = new Lanes(f, t, false);
      const b = t.get(T.i32, "hb");
      f.set(b);
      fmt.decode(l);
      f.get(b);
      fmt.decode(l);
      combine(f, t);
    },
    store: (f, t) => {
      fmt.encode(new Lanes(f, t, false));
      f.mem(Op.i32_store16, 1, 0);
    },
  };
}

/** Binary half kernel: widen both to f32 lanes (8 elements = 2 x 4 lanes), op, round, narrow. */
export function halfBinary(fmt: HalfFormat, op: FloatOp): BinarySpec {
  return {
    bytes: 2,
    vector: (f, t) => {
      const l = new Lanes(f, t, true);
      const a = t.get(T.v128, "ha"), b = t.get(T.v128, "hb");
      f.set(b).set(a);
      for (const extend of [Simd.i32x4_extend_low_i16x8_u, Simd.i32x4_extend_high_i16x8_u]) {
        f.get(a).simd(extend);
        fmt.decode(l);
        f.get(b).simd(extend);
        fmt.decode(l);
        f.simd(op[1]);
        fmt.encode(l);
      }
      f.simd(Simd.i16x8_narrow_i32x4_u);
    },
    scalar: halfScalar(fmt, core(op[0])),
  };
}

/** Unary half kernel: decode, op with the f32 param (temps "sx" / "vx"), encode. */
export function halfUnary(fmt: HalfFormat, op: FloatOp): UnarySpec {
  return {
    bytes: 2,
    param: T.f64,
    prologue: (f, t) => {
      f.get(2).emit(Op.f32_demote_f64).set(t.get(T.f32, "sx"));
      f.get(t.get(T.f32, "sx")).simd(Simd.f32x4_splat).set(t.get(T.v128, "vx"));
    },
    vector: (f, t) => {
      const l = new Lanes(f, t, true);
      const a = t.get(T.v128, "ha"), x = t.get(T.v128, "vx");
      f.set(a);
      for (const extend of [Simd.i32x4_extend_low_i16x8_u, Simd.i32x4_extend_high_i16x8_u]) {
        f.get(a).simd(extend);
        fmt.decode(l);
        f.get(x).simd(op[1]);
        fmt.encode(l);
      }
      f.simd(Simd.i16x8_narrow_i32x4_u);
    },
    scalar: {
      load: (f) => void f.mem(Op.i32_load16_u, 1, 0),
      combine: (f, t) => {
        fmt.decode(new Lanes(f, t, false));
        f.get(t.get(T.f32, "sx")).emit(op[0]);
      },
      store: (f, t) => {
        fmt.encode(new Lanes(f, t, false));
        f.mem(Op.i32_store16, 1, 0);
      },
    },
  };
}
