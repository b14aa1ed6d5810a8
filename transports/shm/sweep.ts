/**
 * @module
 * Removing what a job left in /dev/shm: every segment whose name carries the job's tag (segment.ts
 * names them `/choir-<tag>...`). Who calls it, and when no rank still needs a name, is the caller's.
 */

import { jobTag } from "./segment.ts";

/**
 * Removes the /dev/shm entries of job `jobId` (names starting `choir-<jobTag(jobId)>`); returns how
 * many it removed. A job without an id has no tag of its own, so nothing is removed for it. Without
 * /dev/shm (not Linux) there is nothing to sweep.
 */
export async function sweepJobSegments(jobId: string): Promise<number> {
  const tag = jobTag(jobId);
  if (tag === "") return 0;
  const prefix = `choir-${tag}`;
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
