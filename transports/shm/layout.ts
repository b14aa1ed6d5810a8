/**
 * @module
 * Where everything lives in a group's shared segment: header, one control block per rank, one
 * control block and one byte ring per ordered pair, then the collectives' arena. Only offsets here.
 */

/** Magic number at offset 0 of every segment ("CHSM"). */
export const SEGMENT_MAGIC = 0x4348534d;
/**
 * Bumped whenever the layout below or the protocol around it changes; ranks of different versions
 * refuse each other. 2: liveness by owner slots (owner_lock.ts) instead of pids.
 */
export const LAYOUT_VERSION = 2;
/** Bytes of the token digest stored in the header. */
export const DIGEST_BYTES = 32;
/** Rank state: attached and running. */
export const STATE_ALIVE = 1;
/** Rank state: closed its transport (its rings may still hold data for the others). */
export const STATE_CLOSED = 2;

const LINE = 64; // one cache line: words written by different processes never share one
const HEADER = 4 * LINE;
const RANK_BLOCK = 2 * LINE;
const RING_BLOCK = 3 * LINE;
const PAGE = 4096;

/** The smallest and largest ring sizes accepted (positions are 32-bit and wrap). */
export const MIN_RING_BYTES = 4096;
/** Largest ring size (half the 32-bit position space, so that `tail - head` never overflows). */
export const MAX_RING_BYTES = 1 << 30;

/** What the shm transport tries to stay within by default (Docker's default /dev/shm is 64 MiB). */
const BUDGET = 64 << 20;

/**
 * The default arena for `size` ranks: room for the collectives' per-rank lines and slots plus
 * double-buffered 1 MiB chunks for every rank (none for a single rank).
 */
export function defaultArenaBytes(size: number): number {
  if (size < 2) return 0;
  // Per rank: a control line, two call slots of 4160 bytes (shm_arena.ts) and two 1 MiB chunk buffers.
  const bytes = size * LINE + size * 2 * 4160 + 2 * size * (1 << 20);
  return Math.ceil(bytes / PAGE) * PAGE;
}

/**
 * The default ring size for `size` ranks next to `reserved` other bytes: 4 MiB per ordered pair,
 * halved until everything fits in 64 MiB, but never below 64 KiB.
 */
export function defaultRingBytes(size: number, reserved = 0): number {
  const pairs = Math.max(1, size * (size - 1));
  let ring = 4 << 20;
  while (ring > 64 << 10 && pairs * ring + reserved > BUDGET) ring /= 2;
  return ring;
}

/** Byte offsets within one group's segment. Int32 word indices are `offset / 4`. */
export class Layout {
  /** Number of ranks. */
  readonly size: number;
  /** Bytes of each ring (a power of two). */
  readonly ringBytes: number;
  /** Number of rings (ordered pairs). */
  readonly pairs: number;
  /** Where ring data starts (page aligned). */
  readonly dataStart: number;
  /** Where the arena starts (page aligned). */
  readonly arenaStart: number;
  /** Bytes of the arena (0: none). */
  readonly arenaBytes: number;
  /** Total bytes of the segment. */
  readonly totalBytes: number;
  readonly #rankStart = HEADER;
  readonly #ringStart: number;

  /** Computes the layout for `size` ranks, rings of `ringBytes` (a power of two) and an arena. */
  constructor(size: number, ringBytes: number, arenaBytes: number) {
    this.size = size;
    this.ringBytes = ringBytes;
    this.pairs = size * (size - 1);
    this.#ringStart = HEADER + size * RANK_BLOCK;
    this.dataStart = Math.ceil((this.#ringStart + this.pairs * RING_BLOCK) / PAGE) * PAGE;
    this.arenaStart = this.dataStart + this.pairs * ringBytes;
    this.arenaBytes = Math.ceil(arenaBytes / PAGE) * PAGE;
    this.totalBytes = this.arenaStart + this.arenaBytes;
  }

  // Header words (offsets in bytes).
  /** `SEGMENT_MAGIC`. */
  readonly magic: number = 0;
  /** `LAYOUT_VERSION`. */
  readonly version: number = 4;
  /** Number of ranks. */
  readonly sizeWord: number = 8;
  /** Ring size in bytes. */
  readonly ringWord: number = 12;
  /** Group id. */
  readonly groupWord: number = 16;
  /** How many ranks have attached (the last one unlinks the name). */
  readonly arrived: number = 20;
  /** Arena size in bytes. */
  readonly arenaWord: number = 24;
  /** SHA-256 of the token and nonce, 32 bytes. */
  readonly digest: number = LINE;

  /** The doorbell word of `rank`: peers add 1 after giving it data or space. */
  bell(rank: number): number {
    return this.#rankStart + rank * RANK_BLOCK;
  }
  /** Nonzero while `rank` is (about to be) asleep on its doorbell, so peers must wake it. */
  sleeping(rank: number): number {
    return this.bell(rank) + 4;
  }
  /** `STATE_ALIVE` / `STATE_CLOSED` of `rank` (0 before it attaches). */
  state(rank: number): number {
    return this.bell(rank) + LINE;
  }
  /** The process id of `rank` in its own PID namespace (for messages only: liveness is its owner slot). */
  pid(rank: number): number {
    return this.bell(rank) + LINE + 4;
  }

  /** Index of the ring carrying bytes from `from` to `to` (no ring for from === to). */
  ring(from: number, to: number): number {
    return from * (this.size - 1) + (to < from ? to : to - 1);
  }
  /** The producer's position (bytes ever written, mod 2^32) of ring `k`. */
  tail(k: number): number {
    return this.#ringStart + k * RING_BLOCK;
  }
  /** The consumer's position (bytes ever consumed, mod 2^32) of ring `k`. */
  head(k: number): number {
    return this.tail(k) + LINE;
  }
  /** Nonzero once either end gave up on ring `k` (a failed or closed channel). */
  closed(k: number): number {
    return this.tail(k) + 2 * LINE;
  }
  /** Offset of ring `k`'s data. */
  data(k: number): number {
    return this.dataStart + k * this.ringBytes;
  }
}
