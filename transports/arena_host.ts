/**
 * @module
 * The interface between a shared-memory transport and the collectives that use its memory directly:
 * a region of the segment plus doorbells, naps and liveness. What goes in the region is the
 * collectives' business (collectives/arena/shm_arena.ts).
 */

/** What the arena needs from the shared-memory transport that owns the segment. */
export interface ArenaHost {
  /** This rank within the host's group. */
  readonly rank: number;
  /** Number of ranks sharing the segment. */
  readonly size: number;
  /** The segment as an ArrayBuffer (same bytes in every rank). */
  readonly buffer: ArrayBuffer;
  /** Byte offset of the arena region in `buffer` (64-byte aligned). */
  readonly offset: number;
  /** Bytes of the arena region. */
  readonly bytes: number;
  /** Wakes `rank` if it sleeps (bumps its doorbell). */
  ring(rank: number): void;
  /** This rank's doorbell value, taken before the last check and passed to {@link sleepSync}. */
  snapshot(): number;
  /** Sleeps on this rank's doorbell until rung or `ms` pass, blocking the thread (short waits only). */
  sleepSync(snapshot: number, ms: number): void;
  /** Sleeps on this rank's doorbell until rung or `ms` pass, without blocking the event loop. */
  sleep(snapshot: number, ms: number): Promise<void>;
  /** Gives the core to another process. */
  yieldCore(): void;
  /**
   * Whether more threads are runnable on this machine than it has cores (someone waits for a core), or
   * undefined where that cannot be told. Costs a system call: ask when a spin has run out, not per poll.
   */
  crowded?(): boolean | undefined;
  /** Whether `rank`'s process still runs. */
  alive(rank: number): boolean;
  /** Why `rank` gave up, as it told this rank in-band before closing (see `abort_cause.ts`), or null. */
  causeOf?(rank: number, op: string): Error | null;
}
