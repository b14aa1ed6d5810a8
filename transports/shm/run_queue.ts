/**
 * @module
 * Whether this machine has more runnable threads than cores right now: the running count of
 * /proc/loadavg, read through libc (Deno guards /proc behind --allow-all). A wait uses it to tell a peer
 * that is only late (a core to spare: spinning on costs nobody) from one that waits for a core (yield it).
 * What a wait does with the answer is the arena's business (collectives/arena/shm_arena.ts).
 */

import { type Libc, O_RDONLY } from "./libc.ts";

/** Room for the whole file ("0.30 1.65 1.87 2/117 8225\n" is 26 bytes). */
const BYTES = 128;
const BIG_BYTES = 128n;
const SPACE = 32;
const SLASH = 47;

/**
 * Reads the kernel's count of runnable threads (the calling one included). One `pread` of a procfs file,
 * about 2.5 us here (2-core VM, 2026-12-07): call it when a spin has run out, not per poll.
 */
export class RunQueue {
  readonly #lib: Libc;
  readonly #fd: number;
  readonly #buf = new Uint8Array(BYTES);
  readonly #cores: number;

  private constructor(lib: Libc, fd: number, cores: number) {
    this.#lib = lib;
    this.#fd = fd;
    this.#cores = cores;
  }

  /** Opens /proc/loadavg, or returns null where there is none (then callers keep their old policy). */
  static open(lib: Libc, cores = navigator.hardwareConcurrency || 1): RunQueue | null {
    const fd = lib.fn.open(new TextEncoder().encode("/proc/loadavg\0"), O_RDONLY);
    if (fd < 0) return null;
    const q = new RunQueue(lib, fd, cores);
    return q.running() > 0 ? q : (q.close(), null);
  }

  /** Runnable threads on the machine now (the fourth field's numerator), or 0 if the read failed. */
  running(): number {
    const buf = this.#buf;
    const len = Number(this.#lib.fn.pread(this.#fd, buf, BIG_BYTES, 0n));
    let i = 0;
    for (let spaces = 0; i < len && spaces < 3; i++) if (buf[i] === SPACE) spaces++;
    let n = 0;
    for (; i < len && buf[i] !== SLASH; i++) n = n * 10 + buf[i] - 48;
    return i < len ? n : 0;
  }

  /** Whether some runnable thread has no core to run on (more runnable threads than cores). */
  crowded(): boolean {
    const n = this.running();
    return n === 0 || n > this.#cores;
  }

  /** Closes the file. */
  close(): void {
    this.#lib.fn.close(this.#fd);
  }
}
