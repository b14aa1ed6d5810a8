/**
 * @module
 * The alpha-beta-gamma cost model behind plan.ts: measured constants per medium (tcp, shm) and per
 * host, and each algorithm's critical path as a tally of rounds, frames, bytes and reduced bytes.
 * A pure function of its inputs; choosing among the predictions is plan.ts's job.
 *
 * time = rounds * alpha + (frames - rounds) * frame + bytes * beta + reduced * gamma, where a round
 * waits for a peer (a full latency), a further frame of a stream costs only its per-frame overhead,
 * and a frame larger than the medium's window counts once per window (the sender stalls until the
 * receiver drains it). When a host has more ranks than cores, every wait also pays a context switch
 * and every byte shares a core.
 */

/** Constants of one medium between two ranks. */
export interface LinkCost {
  /** Latency of a dependent round: an 8-byte exchange through the ProcessGroup, microseconds. */
  alphaUs: number;
  /** Cost of each further frame of a stream (headers, JavaScript, syscalls), microseconds. */
  frameUs: number;
  /** Microseconds per byte while both directions run at once. */
  betaUsPerByte: number;
  /** Bytes a sender can have in flight before the receiver must drain them. */
  windowBytes: number;
}

/** Constants of one host. */
export interface HostCost {
  /** Microseconds per byte of the reduce kernel (f32 SUM, 1 MiB blocks, mostly out of cache). */
  gammaUsPerByte: number;
  /** Microseconds per byte of a memcpy (1 MiB blocks, mostly out of cache). */
  copyUsPerByte: number;
  /** One handshake on the shared arena (a cache line per rank), microseconds. */
  arenaUs: number;
  /** Cores the constants were measured with: ranks beyond them share cores. */
  cores: number;
  /** Extra cost of a wait when ranks share cores (the peer must be scheduled first), microseconds. */
  switchUs: number;
}

/*
 * Measured 2026-11-28 on our 2-core dev machine (AMD EPYC KVM guest, Deno 2.9.6) by
 * `deno run -A bench/calibrate.ts` (2 ranks, ping-pong and exchanges through pg.send/recv; OpenBLAS
 * saxpy for gamma), best of three repeats:
 *   tcp: 8 B exchange 24.1 us; 8 B ping-pong half round trip 17.5 us; 4 MiB exchange 2.9 ms
 *        (0.00067 us/B, 1.5 GB/s each way); a further 8 B frame of a stream ~6 us
 *   shm: 8 B exchange 6.9 us; 4 MiB exchange 1.2 ms (0.00028 us/B, 3.6 GB/s each way)
 *   reduce f32 sum (blas) 0.000105 us/B (9.5 GB/s); memcpy 0.000135 us/B (7.4 GB/s)
 * switchUs is fitted to the 4-rank tcp runs in docs/benchmarks.md (barrier 302 us for 2 rounds where
 * 2 ranks take 25 us for 1; ring allreduce 1 MiB 5.6 ms in 24 frames), windowBytes to the 4-rank
 * recursive doubling (1 MiB in one frame cost what 4 frames of 256 KiB would: tcp_wmem autotuning
 * keeps about that much in flight on loopback here); shm's window is its ring (1 MiB or more).
 */

/** Constants of each medium (see the comment above for how and when they were measured). */
export const LINKS: Readonly<Record<"tcp" | "shm", LinkCost>> = {
  tcp: { alphaUs: 24, frameUs: 6, betaUsPerByte: 0.00067, windowBytes: 256 << 10 },
  shm: { alphaUs: 7, frameUs: 3, betaUsPerByte: 0.00028, windowBytes: 1 << 20 },
};

/** Constants of the host (see above). */
export const HOST: Readonly<HostCost> = {
  gammaUsPerByte: 0.000105,
  copyUsPerByte: 0.000135,
  arenaUs: 3,
  cores: 2,
  switchUs: 120,
};

/** Per-rank rates after accounting for ranks sharing cores. */
export interface Rates {
  /** Round latency, us. */
  a: number;
  /** Further frame, us. */
  o: number;
  /** Per byte moved, us. */
  b: number;
  /** Per byte reduced, us. */
  g: number;
  /** Per byte copied, us. */
  c: number;
  /** Window, bytes. */
  w: number;
}

/** The rates of `link` when `ranksPerHost` ranks share a host of {@link HOST}.cores cores. */
export function rates(link: LinkCost, ranksPerHost: number, host: HostCost = HOST): Rates {
  const s = Math.max(1, ranksPerHost / host.cores);
  const wait = host.switchUs * (s - 1);
  return {
    a: link.alphaUs + wait,
    o: link.frameUs + wait,
    b: link.betaUsPerByte * s,
    g: host.gammaUsPerByte * s,
    c: host.copyUsPerByte * s,
    w: link.windowBytes,
  };
}

/** An algorithm's critical path on its busiest rank. */
export interface Tally {
  /** Dependent rounds (each waits for a peer). */
  rounds: number;
  /** Frames in all, counting a frame once per window it spans. */
  frames: number;
  /** Bytes sent (or received, whichever is more). */
  bytes: number;
  /** Bytes reduced. */
  reduced: number;
  /** Bytes copied (arena algorithms). */
  copied: number;
}

/** Microseconds a tally takes at `r`. */
export function timeOf(t: Tally, r: Rates): number {
  return t.rounds * r.a + Math.max(0, t.frames - t.rounds) * r.o + t.bytes * r.b + t.reduced * r.g +
    t.copied * r.c;
}

/** A tally of nothing. */
export function tally(t: Partial<Tally>): Tally {
  return { rounds: 0, frames: 0, bytes: 0, reduced: 0, copied: 0, ...t };
}

/** Frames a message of `bytes` counts for: one per window it spans, at least one. */
export function framesOf(bytes: number, window: number): number {
  return Math.max(1, Math.ceil(bytes / window));
}
