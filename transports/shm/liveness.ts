/**
 * @module
 * Whether a peer process still runs: a pidfd polled for exit (sees zombies and survives pid reuse),
 * or `kill(pid, 0)` where pidfds are unavailable. When to ask is left to the progress engine.
 */

import { errno, ESRCH, type Libc } from "./libc.ts";

const POLLIN = 1;

/** Watches one peer process by pid. */
export class ProcessWatch {
  /** The watched process id. */
  readonly pid: number;
  readonly #lib: Libc;
  #fd: number;
  readonly #pollfd = new Int32Array(2);

  /** Starts watching `pid` (opened right after the peer registered it, so it is that process). */
  constructor(lib: Libc, pid: number) {
    this.#lib = lib;
    this.pid = pid;
    const fd = pid > 0 ? Number(lib.fn.pidfd_open(lib.sysPidfdOpen, pid, 0)) : -1;
    this.#fd = fd;
  }

  /** Whether the process has not exited (a zombie counts as exited when a pidfd is available). */
  alive(): boolean {
    if (this.pid <= 0) return true;
    if (this.#fd >= 0) {
      this.#pollfd[0] = this.#fd;
      this.#pollfd[1] = POLLIN; // events = POLLIN, revents = 0
      // A pidfd polls readable once the process has exited; -1 (EINTR) means "ask again later".
      return this.#lib.fn.poll(this.#pollfd, 1n, 0) < 1;
    }
    return this.#lib.fn.kill(this.pid, 0) === 0 || errno(this.#lib) !== ESRCH;
  }

  /** Closes the pidfd. */
  close(): void {
    if (this.#fd >= 0) this.#lib.fn.close(this.#fd);
    this.#fd = -1;
  }
}
