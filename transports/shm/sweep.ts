/**
 * @module
 * Removing what jobs left in /dev/shm. The launcher sweeps its own job's names after each round, by
 * exact tag (segment.ts); and every process, before its first segment, removes the segments that no
 * process holds an owner slot of any more (owner_lock.ts): what ranks killed outside a launcher
 * (env://, srun, mpirun) left between creating a segment and every peer attaching. Who calls which,
 * and when, is left to the launcher and attach.ts.
 */

import { cString, type Libc, O_RDWR } from "./libc.ts";
import { slotHeld } from "./owner_lock.ts";
import { jobTag, OWNED_NAME } from "./segment.ts";

/**
 * Removes the /dev/shm entries of job `jobId` (names starting `choir-<jobTag(jobId)>`, an exact tag: no
 * other job id yields a prefix of it); returns how many it removed. A job without an id has no tag of
 * its own, so nothing is removed for it. Without /dev/shm (not Linux) there is nothing to sweep.
 */
export async function sweepJobSegments(jobId: string): Promise<number> {
  if (!jobId) return 0;
  const prefix = `choir-${await jobTag(jobId)}`;
  let removed = 0;
  try {
    for await (const e of Deno.readDir("/dev/shm")) {
      if (!e.name.startsWith(prefix)) continue;
      try {
        await Deno.remove(`/dev/shm/${e.name}`);
        removed++;
      } catch {
        // Gone already (a rank unlinked it just now).
      }
    }
  } catch {
    // No /dev/shm here (not Linux): nothing to sweep.
  }
  return removed;
}

/** Offset of `d_name` in glibc's `struct dirent` on 64-bit Linux (d_ino, d_off, d_reclen, d_type). */
const D_NAME = 19;
const SEEK_END = 2;

/**
 * Removes the segments in /dev/shm that nobody holds: names of the owner-slot protocol
 * ({@link OWNED_NAME}) this user can open, with a size (their creator took its slot before giving them
 * one) and no slot held by any process. Returns the names removed. A segment still in use always has a
 * holder, whatever PID namespace it runs in, so it is never taken; other users' segments (mode 0600)
 * cannot be opened, so they are left alone. Through libc (needs only `--allow-ffi`).
 */
export function sweepAbandonedSegments(lib: Libc): string[] {
  const removed: string[] = [];
  const dir = lib.fn.opendir(cString("/dev/shm"));
  if (dir === null) return removed; // no /dev/shm
  const names: string[] = [];
  try {
    for (let e = lib.fn.readdir(dir); e !== null; e = lib.fn.readdir(dir)) {
      const name = Deno.UnsafePointerView.getCString(e, D_NAME);
      if (OWNED_NAME.test(name)) names.push(name);
    }
  } finally {
    lib.fn.closedir(dir);
  }
  for (const name of names) {
    const cname = cString(`/${name}`);
    const fd = lib.fn.shm_open(cname, O_RDWR, 0);
    if (fd < 0) continue; // gone, or another user's
    try {
      // Size 0: being made right now (its creator takes its slot before sizing it), or left by a
      // creator killed in between, which holds no memory.
      if (lib.fn.lseek(fd, 0n, SEEK_END) <= 0n) continue;
      if (slotHeld(lib, fd, undefined, {})) continue;
      if (lib.fn.shm_unlink(cname) === 0) removed.push(name);
    } catch {
      // Not judged: left alone.
    } finally {
      lib.fn.close(fd);
    }
  }
  return removed;
}

let swept = false;

/**
 * Runs {@link sweepAbandonedSegments} once per process (later calls return at once); a failure only
 * leaves the leftovers for the next process.
 */
export function sweepAtStartup(lib: Libc): void {
  if (swept) return;
  swept = true;
  try {
    sweepAbandonedSegments(lib);
  } catch {
    // Never fail a job over someone else's leftovers.
  }
}
