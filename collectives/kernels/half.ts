/**
 * @module
 * Scalar f16 and bf16 conversions (IEEE binary16 and bfloat16 bits <-> numbers), rounding to nearest
 * even and keeping NaN, infinities, signed zeros and subnormals. Array loops live in the kernels.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The value of the binary16 bit pattern `h` (0..0xFFFF). */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/**
 * The binary16 bits of `x` after rounding it to f32: `x` goes to f32 (nearest even), then to f16
 * (nearest even; overflow gives infinity, NaN gives a quiet NaN with the sign kept).
 */
export function numberToF16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const abs = bits & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | (abs > 0x7f800000 ? 0x7e00 : 0x7c00);
  // 65520 (halfway between 65504 and 2^16) and above round to infinity
  if (abs >= 0x477ff000) return sign | 0x7c00;
  if (abs < 0x38800000) {
    // subnormal or zero: a multiple of 2^-24, nearest even (may round up to the smallest normal)
    const m = Math.abs(f32[0]) * 2 ** 24;
    let q = Math.floor(m);
    const rest = m - q;
    if (rest > 0.5 || (rest === 0.5 && (q & 1) === 1)) q++;
    return sign | q;
  }
  const exp = (abs >>> 23) - 112;
  let h = (exp << 10) | ((abs >>> 13) & 0x3ff);
  const rest = abs & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // a carry moves into the exponent
  return sign | h;
}

/** The value of the bfloat16 bit pattern `h` (0..0xFFFF). */
export function bf16ToNumber(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/**
 * The bfloat16 bits of `x` after rounding it to f32: the top 16 bits of the f32, rounded to nearest
 * even (overflow gives infinity, NaN a quiet NaN with the sign kept).
 */
export function numberToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40;
  return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
}
