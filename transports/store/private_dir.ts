/**
 * @module
 * The check a FileStore makes of its directory: it must belong to this user and be writable by nobody
 * else, since whoever can write there can read (by replacing) or forge every key, the job's token
 * included. Making the directory is the FileStore's job.
 */

import { type ErrorContext, StoreError } from "../../errors.ts";

/**
 * Throws StoreError naming `dir` when another user owns it (or the link to it) or others may write in
 * it; returns this user's uid (null where files have no owners).
 */
export function checkPrivateDir(dir: string, ctx: ErrorContext): number | null {
  const uid = ownUid(dir, ctx);
  if (uid === null) return null; // no owners to compare (Windows)
  const link = Deno.lstatSync(dir);
  const info = link.isSymlink ? Deno.statSync(dir) : link;
  const owner = link.isSymlink && link.uid !== uid ? link.uid : info.uid;
  if (!info.isDirectory) throw new StoreError(`the store path ${dir} is not a directory`, ctx);
  if (owner !== uid) {
    throw new StoreError(
      `the store directory ${dir} is owned by uid ${owner}, not by this user (uid ${uid}): someone else ` +
        `made it, and could read or forge the job's keys; use a directory of your own`,
      ctx,
    );
  }
  const mode = (info.mode ?? 0) & 0o777;
  if ((mode & 0o022) !== 0) {
    throw new StoreError(
      `the store directory ${dir} is writable by others (mode ${mode.toString(8).padStart(4, "0")}): they ` +
        `could replace the job's keys; use a directory only you can write (chmod go-w ${dir}, or a new path)`,
      ctx,
    );
  }
  return uid;
}

/**
 * This process's uid: Deno.uid() where `--allow-sys` grants it, else the owner of a file made (and at
 * once removed) in `dir`, which FileStore may write in anyway.
 */
function ownUid(dir: string, ctx: ErrorContext): number | null {
  if (Deno.permissions.querySync({ name: "sys", kind: "uid" }).state === "granted") return Deno.uid();
  let probe: string;
  try {
    probe = Deno.makeTempFileSync({ dir, prefix: ".uid-" });
  } catch (err) {
    throw new StoreError(`cannot write in the store directory ${dir}: ${(err as Error).message}`, {
      ...ctx,
      cause: err,
    });
  }
  try {
    return Deno.lstatSync(probe).uid;
  } finally {
    Deno.removeSync(probe);
  }
}
