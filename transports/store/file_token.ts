/**
 * @module
 * The token of a `file://` job: kept in a 0600 file inside the job's store directory (which FileStore
 * made 0700 and checked is this user's). The first rank to arrive publishes one, the token it was given
 * or a random one; the others adopt it, or are refused when they were given another.
 */

import { join } from "node:path";
import { AuthError, type ErrorContext, StoreError } from "../../errors.ts";
import { constantTimeEqual, generateToken } from "../token.ts";

/** The file of the token inside the store directory (key files never start with "."). */
const TOKEN_FILE = ".token";
const enc = new TextEncoder();

/**
 * The job token kept in store directory `dir`, publishing `given` (or a random token) if none is there
 * yet; `uid` is this user's (checkPrivateDir's answer). Throws AuthError naming `dir` when it holds another token than `given`, StoreError when the file
 * is not this user's private file.
 */
export async function fileJobToken(
  dir: string,
  uid: number | null,
  given: string | undefined,
  ctx: ErrorContext,
): Promise<string> {
  const file = join(dir, TOKEN_FILE);
  const tmp = join(dir, `.token-${crypto.randomUUID()}`);
  try {
    await Deno.writeTextFile(tmp, given ?? generateToken(), { mode: 0o600, createNew: true });
    // link() publishes the whole file under its name, or fails when a token is there already.
    await Deno.link(tmp, file).catch((err) => {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    });
  } catch (err) {
    throw new StoreError(`cannot publish the job token in ${dir}: ${(err as Error).message}`, {
      ...ctx,
      cause: err,
    });
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
  const info = Deno.lstatSync(file);
  if (!info.isFile || (uid !== null && (info.uid !== uid || ((info.mode ?? 0) & 0o077) !== 0))) {
    throw new StoreError(`the token file ${file} is not a private file of this user`, ctx);
  }
  const held = (await Deno.readTextFile(file)).trim();
  if (held === "") throw new StoreError(`the token file ${file} is empty`, ctx);
  if (given !== undefined && !constantTimeEqual(enc.encode(held), enc.encode(given.trim()))) {
    throw new AuthError(`the store directory ${dir} belongs to a job with another token`, ctx);
  }
  return held;
}
