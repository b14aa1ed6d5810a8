/**
 * @module
 * The alpha-beta-gamma cost model behind plan.ts: measured constants per medium (tcp, shm, ucx) and per
 * host, and each algorithm's critical path as a tally of rounds, frames, bytes and reduced bytes.
 * A pure function of its inputs; choosing among the predictions is plan.ts's job.
 *
 * time = rounds * alpha + (frames - rounds) * frame + bytes * beta + reduced * gamma, where a round
 * waits for a peer (a full latency) and a further frame of a stream costs only its per-frame
 * overhead. Bytes that flow one way (broadcast, reduce) move at the one-way rate, and in a one-way
 * chunk pipeline the receiver's reduce overlaps the sender's next chunk. When a host has more ranks
 * than cores, every wait also pays a context switch, every byte shares a core, and a frame larger
 * than the medium's window counts once per window (the sender stalls until the receiver, which may
 * not be running, drains it).
 */

/** Constants of one medium between two ranks. */
export interface LinkCost {
  /** Latency of a dependent round: an 8-byte exchange through the ProcessGroup, microseconds. */
  alphaUs: number;
  /** Cost of each further frame of a stream (headers, JavaScript, syscalls), microseconds. */
  frameUs: number;
  /** Microseconds per byte while both directions run at once. */
  betaUsPerByte: number;
  /** Microseconds per byte of a one-way stream (the sender's and receiver's copies overlap). */
  betaOneWayUsPerByte: number;
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
  /** The same for an arena wait, which spins, yields and naps on a futex instead of a socket. */
  arenaSwitchUs: number;
}

/*
 * Measured 2026-11-27 on our 2-core dev machine (AMD EPYC KVM guest, 2 vCPUs, Deno 2.9.6) with
 * `deno run -A bench/calibrate.ts` (2 ranks through pg.send/recv, best of three repeats each):
 *   tcp: 8 B exchange 35.8 us (alpha); 8 B ping-pong half round trip 41 us; further frames of a
 *        one-way stream 9.8 us each; 4 MiB exchange 2.87 ms: 6.8e-4 us/B (1.48 GB/s each way at
 *        once); 4 MiB ping-pong 1.55 ms a way: 3.6e-4 us/B (2.8 GB/s one way)
 *   shm: 8 B exchange 7.6 us; frames 4.6 us; 4 MiB exchange 1.99 ms: 4.7e-4 us/B (2.1 GB/s each
 *        way); one way 2.7e-4 us/B (3.7 GB/s)
 *   reduce f32 sum (OpenBLAS saxpy), 1 MiB blocks over a 4 MiB working set: 1.57-1.82e-4 us/B
 *        (5.5-6.4 GB/s; 5.1-5.7 GB/s over 16 MiB), so 1.7e-4; memcpy 1.6-2.1e-4 us/B, so 1.9e-4.
 *   arena handshake: 2 ranks allreduce 8 B in 2.6-4.4 us (docs/benchmarks.md), so 3 us; 4 ranks
 *        38-74 us, so 47 us more per wait when two ranks share a core.
 * Fitted to the 4-rank (2 ranks a core) tcp rows of docs/benchmarks.md: switchUs 130 (8 B recursive
 * doubling 2 rounds 290-315 us, barrier 302 us; ring 1 MiB 5.6 ms in 24 frames); tcp windowBytes
 * 256 KiB (recursive doubling at 1 MiB, one frame per round, costs 4.8 ms where 2 rounds of bytes
 * alone would be 3.6 ms: four stalls a frame; tcp_wmem lets about that much sit in flight here).
 * shm's window is its ring (1 MiB and more a pair).
 * ucx (added 2026-11-27, `deno task calibrate`, two runs, libucp 1.13.1 choosing sysv shared memory
 * and CMA on one host): 8 B exchange 21.9 / 26.9 us, further frames 18.7 / 15.4 us; 4 MiB exchange
 * 1.8e-4 / 1.0e-4 us/B (5.6-9.9 GB/s each way at once: one CMA copy per byte), one way 2.3e-4 /
 * 1.9e-4 us/B. Large frames use rendezvous, which needs both sides to progress, so a peer that is
 * not running stalls a transfer as a full socket window does: 256 KiB, as tcp, matches the 4-rank
 * measurements (`deno task bench --transport ucx --nproc 4 --op allreduce --algo ...`: Rabenseifner
 * fastest at 1 MiB, 1.6 ms against recursive doubling's 3.3 ms). Across hosts UCX runs over whatever
 * fabric it finds, which we cannot measure here (no RDMA device), so tcp's constants stand in there.
 */

/** Constants of each medium (see the comment above for how and when they were measured). */
export const LINKS: Readonly<Record<"tcp" | "shm" | "ucx", LinkCost>> = {
  tcp: {
    alphaUs: 36,
    frameUs: 10,
    betaUsPerByte: 0.00068,
    betaOneWayUsPerByte: 0.00036,
    windowBytes: 256 << 10,
  },
  shm: {
    alphaUs: 7.6,
    frameUs: 4.6,
    betaUsPerByte: 0.00047,
    betaOneWayUsPerByte: 0.00027,
    windowBytes: 1 << 20,
  },
  ucx: {
    alphaUs: 24,
    frameUs: 17,
    betaUsPerByte: 0.00014,
    betaOneWayUsPerByte: 0.00021,
    windowBytes: 256 << 10,
  },
};

/** Constants of the host (see above). */
export const HOST: Readonly<HostCost> = {
  gammaUsPerByte: 0.00017,
  copyUsPerByte: 0.00019,
  arenaUs: 3,
  cores: 2,
  switchUs: 130,
  arenaSwitchUs: 47,
};

/** Per-rank rates after accounting for ranks sharing cores. */
export interface Rates {
  /** Round latency, us. */
  a: number;
  /** Further frame, us. */
  o: number;
  /** Per byte moved, both directions at once, us. */
  b: number;
  /** Per byte moved one way, us. */
  b1: number;
  /** Per byte reduced, us. */
  g: number;
  /** Per byte copied, us. */
  c: number;
  /** Window, bytes. */
  w: number;
  /** Ranks per core (1 when each rank has a core). */
  s: number;
}

/**
 * The rates of `link` when `ranksPerHost` ranks share a host of {@link HOST}.cores cores, a wait
 * then costing `switchUs` more per extra rank a core.
 */
export function rates(
  link: LinkCost,
  ranksPerHost: number,
  host: HostCost = HOST,
  switchUs = host.switchUs,
): Rates {
  const s = Math.max(1, ranksPerHost / host.cores);
  const wait = switchUs * (s - 1);
  return {
    a: link.alphaUs + wait,
    o: link.frameUs + wait,
    b: link.betaUsPerByte * s,
    b1: link.betaOneWayUsPerByte * s,
    g: host.gammaUsPerByte * s,
    c: host.copyUsPerByte * s,
    // With a core per rank the receiver drains a full window while the sender waits: no extra cost.
    w: s > 1 ? link.windowBytes : Infinity,
    s,
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
  /** The bytes flow one way (broadcast, reduce): the one-way rate applies. */
  oneWay: boolean;
  /**
   * A one-way chunk pipeline: with a core per rank, the receiver reduces one chunk while the sender
   * sends the next, so only the larger of the two costs shows.
   */
  pipelined: boolean;
}

/** Microseconds a tally takes at `r`. */
export function timeOf(t: Tally, r: Rates): number {
  const move = t.bytes * (t.oneWay ? r.b1 : r.b);
  const reduce = t.reduced * r.g;
  const work = t.pipelined && r.s <= 1 ? Math.max(move, reduce) : move + reduce;
  return t.rounds * r.a + Math.max(0, t.frames - t.rounds) * r.o + work + t.copied * r.c;
}

/** A tally of nothing. */
export function tally(t: Partial<Tally>): Tally {
  return { rounds: 0, frames: 0, bytes: 0, reduced: 0, copied: 0, oneWay: false, pipelined: false, ...t };
}

/** Frames a message of `bytes` counts for: one per window it spans, at least one. */
export function framesOf(bytes: number, window: number): number {
  return Math.max(1, Math.ceil(bytes / window));
}
