/**
 * @module
 * Who still holds a shared segment, without pids: every process using a segment keeps a descriptor
 * open on it and an open-file-description lock (`F_OFD_SETLK`) on one byte of its own, its slot. The
 * kernel drops the lock when the descriptor goes, however the process ends (exit, SIGTERM, SIGKILL),
 * so a peer asks "does rank r still hold its slot?" and a sweeper asks "does anyone hold any slot?".
 * Unlike a pid this holds across PID namespaces (containers sharing /dev/shm), never names a reused
 * pid, and sees a zombie as gone. The locks are advisory and guard nothing in the mapping itself.
 * Which slot belongs to whom is left to the segment's users.
 */

import { callError, EACCES, EAGAIN, errno, type Libc } from "./libc.ts";

const F_OFD_GETLK = 36;
const F_OFD_SETLK = 37;
const F_WRLCK = 1;
const F_UNLCK = 2;
const SEEK_SET = 0;

/** `struct flock` (x86_64 and aarch64): l_type i16, l_whence i16, l_start i64 @8, l_len i64 @16, l_pid i32 @24. */
function flock(start: number, len: number): Uint8Array {
  const b = new Uint8Array(32);
  const dv = new DataView(b.buffer);
  dv.setInt16(0, F_WRLCK, true);
  dv.setInt16(2, SEEK_SET, true);
  dv.setBigInt64(8, BigInt(start), true);
  dv.setBigInt64(16, BigInt(len), true);
  return b; // l_pid stays 0, as OFD locks require
}

/**
 * Takes slot `slot` of the segment open as `fd` for this descriptor; false when another process's
 * descriptor holds it already. Released when `fd` is closed.
 */
export function lockSlot(lib: Libc, fd: number, slot: number, ctx: { rank?: number }): boolean {
  if (lib.fn.fcntl(fd, F_OFD_SETLK, flock(slot, 1)) === 0) return true;
  const code = errno(lib);
  if (code === EAGAIN || code === EACCES) return false;
  throw callError(lib, "fcntl", code, ctx, `F_OFD_SETLK, slot ${slot}`);
}

/** Whether another descriptor holds slot `slot` (or, with `slot` undefined, any slot at all). */
export function slotHeld(lib: Libc, fd: number, slot: number | undefined, ctx: { rank?: number }): boolean {
  const b = slot === undefined ? flock(0, 0) : flock(slot, 1); // length 0: from start to any end
  if (lib.fn.fcntl(fd, F_OFD_GETLK, b) !== 0) {
    throw callError(lib, "fcntl", errno(lib), ctx, `F_OFD_GETLK, slot ${slot ?? "any"}`);
  }
  return new DataView(b.buffer).getInt16(0, true) !== F_UNLCK;
}
