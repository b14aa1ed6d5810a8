/**
 * @module
 * One single-producer/single-consumer byte ring in the shared segment, seen from either end: free
 * space, copies that wrap at the end, and publishing positions. Frames and waking are left to the channel.
 */

import type { Layout } from "./layout.ts";

/** The words and bytes of one ring, shared by both ends (the base of {@link RingWriter} and {@link RingReader}). */
export class RingBase {
  /** The segment as 32-bit words (for the atomics). */
  protected readonly words: Int32Array;
  /** The segment as bytes (for the copies). */
  protected readonly bytes: Uint8Array;
  /** Word index of the producer's position. */
  protected readonly tailIdx: number;
  /** Word index of the consumer's position. */
  protected readonly headIdx: number;
  /** Word index of the closed flag. */
  protected readonly closedIdx: number;
  /** Offset of the ring's first byte in the segment. */
  protected readonly start: number;
  /** Ring size in bytes (a power of two). */
  readonly size: number;
  /** `size - 1`, to wrap positions. */
  protected readonly mask: number;

  /** Binds ring `k` of `layout` in the segment viewed by `words` and `bytes`. */
  constructor(words: Int32Array, bytes: Uint8Array, layout: Layout, k: number) {
    this.words = words;
    this.bytes = bytes;
    this.tailIdx = layout.tail(k) >> 2;
    this.headIdx = layout.head(k) >> 2;
    this.closedIdx = layout.closed(k) >> 2;
    this.start = layout.data(k);
    this.size = layout.ringBytes;
    this.mask = layout.ringBytes - 1;
  }

  /** Segment offset of the byte `ahead` bytes after position `pos`. */
  protected at(pos: number, ahead: number): number {
    return this.start + ((pos + ahead) & this.mask);
  }

  /** Whether either end has marked the ring closed. */
  get closed(): boolean {
    return Atomics.load(this.words, this.closedIdx) !== 0;
  }

  /** Marks the ring closed, so the other end stops waiting on it. */
  close(): void {
    Atomics.store(this.words, this.closedIdx, 1);
  }
}

/** The producer's end. Only one process writes `tail`, so it is also kept here. */
export class RingWriter extends RingBase {
  #tail = 0;

  /** Bytes that may be written now. */
  free(): number {
    return this.size - ((this.#tail - Atomics.load(this.words, this.headIdx)) >>> 0);
  }

  /** Segment offset of the byte `ahead` bytes past the unpublished tail (for writing a header in place). */
  offset(ahead: number): number {
    return this.at(this.#tail, ahead);
  }

  /** Copies `src` to `ahead` bytes past the tail, wrapping at the end of the ring. */
  write(ahead: number, src: Uint8Array): void {
    const o = this.at(this.#tail, ahead);
    const first = Math.min(src.byteLength, this.start + this.size - o);
    if (first === src.byteLength) this.bytes.set(src, o);
    else {
      this.bytes.set(src.subarray(0, first), o);
      this.bytes.set(src.subarray(first), this.start);
    }
  }

  /** Makes the next `n` bytes visible to the consumer (the atomic store orders the copies before it). */
  publish(n: number): void {
    this.#tail = (this.#tail + n) >>> 0;
    Atomics.store(this.words, this.tailIdx, this.#tail | 0);
  }
}

/** The consumer's end. Only one process writes `head`, so it is also kept here. */
export class RingReader extends RingBase {
  #head = 0;

  /** Bytes that may be read now. */
  available(): number {
    return (Atomics.load(this.words, this.tailIdx) - this.#head) >>> 0;
  }

  /** Segment offset of the byte `ahead` bytes past the head (for reading a header in place). */
  offset(ahead: number): number {
    return this.at(this.#head, ahead);
  }

  /** Copies `dst.byteLength` bytes from `ahead` bytes past the head into `dst`, wrapping at the end. */
  read(ahead: number, dst: Uint8Array): void {
    const o = this.at(this.#head, ahead);
    const n = dst.byteLength;
    const first = Math.min(n, this.start + this.size - o);
    dst.set(this.bytes.subarray(o, o + first));
    if (first < n) dst.set(this.bytes.subarray(this.start, this.start + n - first), first);
  }

  /** Gives the next `n` bytes back to the producer. */
  release(n: number): void {
    this.#head = (this.#head + n) >>> 0;
    Atomics.store(this.words, this.headIdx, this.#head | 0);
  }
}
