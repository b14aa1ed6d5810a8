/**
 * @module
 * Rendezvous: turns an init method and the rank's env into a connected Store (rank 0 starting the
 * TCP server when nobody else runs one), and `joinBarrier`, which names the ranks that never came and
 * the rank two processes claimed (rank_claims.ts).
 */

import { type ChoirEnv, DEFAULT_TIMEOUT_MS } from "../../config.ts";
import { AuthError, PermissionError, RendezvousError, StoreTimeoutError } from "../../errors.ts";
import { FileStore } from "./file_store.ts";
import { fileJobToken } from "./file_token.ts";
import { refusePublicToken } from "../public_token.ts";
import { PrefixStore } from "./prefix_store.ts";
import { parseInitMethod } from "./init_method.ts";
import { claimant, claimValue, duplicateKey, duplicateRank, heldClaim } from "./rank_claims.ts";
import { arriveAt, type Store } from "./store.ts";
import { startStoreServer, type StoreServer, storeThreadFor } from "./tcp_server.ts";
import { TcpStore } from "./tcp_store.ts";

/** Options of {@link createStore}; each falls back to the matching field of `env`. */
export interface CreateStoreOptions {
  /** This process's rank (default `env.rank`, i.e. RANK). */
  rank?: number;
  /** Number of ranks (default `env.worldSize`, i.e. WORLD_SIZE). */
  worldSize?: number;
  /**
   * The job's secret (default `env.token`, i.e. CHOIR_TOKEN). `file://` without one uses the random token
   * the job keeps in its store directory; a token derived from a scheduler's public job id
   * (`env.tokenOrigin`) is refused for a store that is not on loopback.
   */
  token?: string;
  /** Timeout of store calls and of reaching the server, in ms (default `env.timeoutMs`, else 300000). */
  timeoutMs?: number;
  /** The environment, as read by `readEnv()` (default: empty, so only explicit options count). */
  env?: ChoirEnv;
}

/** A rank's side of a rendezvous: its store, rank and world size. */
export interface Rendezvous {
  /** The store shared by every rank of the job. */
  readonly store: Store;
  /** This process's rank. */
  readonly rank: number;
  /** Number of ranks in the job. */
  readonly worldSize: number;
  /** The job token, which the transports' handshakes prove (for `file://`: the directory's). */
  readonly token: string;
  /** Closes the store client, and the server if this rank started one. */
  close(): Promise<void>;
}

/**
 * Creates the job's store from `initMethod` (undefined = `env://`):
 * - `env://`: the TCP store at MASTER_ADDR:MASTER_PORT. Rank 0 starts the server there unless
 *   CHOIR_STORE_EXTERNAL is set (the launcher runs it). Keys go under CHOIR_STORE_PREFIX when set.
 * - `tcp://HOST:PORT`: the TCP store at HOST:PORT; rank 0 always starts the server.
 * - `file:///PATH`: a FileStore in directory PATH (made 0700, removed when every rank has closed it; a
 *   directory of another user or writable by others is a StoreError); the job token is kept there.
 *
 * TCP stores are contacted once before returning (retrying until the timeout, since rank 0 may start
 * late). Throws RendezvousError for a malformed URL, a missing rank/world size/address/token, a public
 * token off loopback, or an unreachable server; AuthError when the server cannot prove it holds the
 * token (another job's store, or an impostor on the port: nothing secret is sent to it) or refuses ours.
 */
export async function createStore(
  initMethod: string | undefined,
  opts: CreateStoreOptions = {},
): Promise<Rendezvous> {
  const env = opts.env ?? {};
  const method = parseInitMethod(initMethod);
  const scheme = `${method.kind}://`;
  const op = "createStore";
  const { rank, worldSize } = checkRankAndSize(
    scheme,
    opts.rank ?? env.rank,
    opts.worldSize ?? env.worldSize,
    op,
  );
  const timeoutMs = opts.timeoutMs ?? env.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  if (method.kind === "file") {
    // Made and checked first without counting this rank among those whose close removes it: a rank
    // refused here must not take part in the cleanup.
    const dir = new FileStore(method.path, { rank, timeoutMs });
    // A public token guards nothing: the directory's random one does better.
    const given = opts.token ?? (env.tokenOrigin === undefined ? env.token : undefined);
    try {
      const token = await fileJobToken(dir.path, dir.ownerUid, given || undefined, { rank, op });
      const store = new FileStore(method.path, { rank, worldSize, timeoutMs });
      return { store, rank, worldSize, token, close: () => store.close() };
    } finally {
      await dir.close();
    }
  }

  let host: string;
  let port: number;
  let serve: boolean;
  if (method.kind === "env") {
    if (env.masterAddr === undefined || env.masterPort === undefined) {
      const missing = [
        env.masterAddr === undefined && "MASTER_ADDR",
        env.masterPort === undefined && "MASTER_PORT",
      ];
      throw new RendezvousError(`env:// needs ${missing.filter(Boolean).join(" and ")} in the environment`, {
        rank,
        op,
      });
    }
    host = env.masterAddr;
    port = env.masterPort;
    serve = rank === 0 && env.storeExternal !== true;
  } else {
    host = method.host;
    port = method.port;
    serve = rank === 0;
  }
  const token = opts.token ?? env.token;
  if (token === undefined || token === "") {
    throw new RendezvousError(`${scheme} needs the job token (CHOIR_TOKEN or the token option)`, {
      rank,
      op,
    });
  }
  if (opts.token === undefined) refusePublicToken(env.tokenOrigin, host, port, { rank, op });

  let server: StoreServer | undefined;
  if (serve) {
    try {
      server = await startStoreServer({
        hostname: host,
        port,
        token,
        rank,
        thread: storeThreadFor(worldSize),
      });
    } catch (err) {
      if (err instanceof PermissionError) throw err;
      const taken = err instanceof Error && err.cause instanceof Deno.errors.AddrInUse;
      if (!taken) {
        throw new RendezvousError(
          `rank 0 could not start the store server on ${host}:${port}: ${errText(err)}`,
          {
            rank,
            op,
            cause: err,
          },
        );
      }
      // The port is taken. Only a server that proves it holds this job's token is joined (another
      // process started as rank 0 of this job: the join barrier then names both); anything else there
      // is refused, having learnt nothing.
      await checkTakenPort(host, port, token, rank, Math.min(timeoutMs, 2000), err);
    }
  }
  const client = new TcpStore({ host, port, token, timeoutMs, rank });
  // The launcher gives each round of an elastic job its own key space in its long-lived store.
  const store = env.storePrefix ? new PrefixStore(env.storePrefix, client) : client;
  const close = async () => {
    await client.close();
    await server?.close();
  };
  try {
    await client.connect(); // the session's hello is the first contact: no request besides
  } catch (err) {
    await close();
    if (err instanceof AuthError || err instanceof PermissionError) throw err;
    throw new RendezvousError(`rank ${rank} found no store: ${errText(err)}`, { rank, op, cause: err });
  }
  return { store, rank, worldSize, token, close };
}

/** Options of {@link joinBarrier}. */
export interface JoinOptions {
  /** This process's host name, named when its rank is claimed twice (default: none). */
  host?: string;
  /**
   * Unused: the barrier's one wait also wakes when a rank is claimed twice, so there is nothing to poll.
   * Kept so that existing callers compile.
   */
  pollMs?: number;
}

/**
 * Waits until all `worldSize` ranks have called it with the same `tag`. On timeout, throws
 * RendezvousError naming the ranks that never arrived ("ranks 2, 3 of 4 never arrived within 5000 ms").
 * Each process claims its rank: when two processes join as one rank, the second to claim it and every
 * rank still waiting throw RendezvousError naming the rank and both processes ("rank 1 joined twice:
 * pid 311 on a and pid 312 on a ..."); ranks already past the barrier learn it through
 * `watchDuplicateRanks` on the same store. Each barrier needs its own `tag`: arrivals are kept in the
 * store, so a reused tag passes at once (for the process that claimed the rank).
 *
 * One store request per rank on the TCP store, whatever the world size ({@link Store.arrive}, three on
 * stores without it): the claim (a compare-set of `<tag>/<rank>`), one `add` to the counter
 * `<tag>/arrived` (the arrival that completes it sets `<tag>/done`) and one watch of `<tag>/done` and
 * `<tag>/duplicate`. Only a timeout looks at every rank's claim (one request).
 */
export async function joinBarrier(
  store: Store,
  rank: number,
  worldSize: number,
  timeoutMs: number,
  tag = "choir/join",
  opts: JoinOptions = {},
): Promise<void> {
  const op = "joinBarrier";
  checkRankAndSize("joinBarrier", rank, worldSize, op);
  const ctx = { rank, op };
  const me = claimant(opts.host);
  const mine = claimValue(me);
  const done = `${tag}/done`;
  const dupKey = duplicateKey(tag);
  const watchKeys = [done, dupKey];
  const deadline = Date.now() + timeoutMs;
  // Claim, count and watch: one request on the TCP store, three on the others (Store.arrive).
  const arrival = await arriveAt(store, {
    claimKey: `${tag}/${rank}`,
    claim: mine,
    counterKey: `${tag}/arrived`,
    size: worldSize,
    doneKey: done,
    watchKeys,
  }, timeoutMs);
  let set = arrival.set;
  if (set === null) {
    // Not our claim: this process's from an earlier call (counted then), or another's (a duplicate rank).
    const claim = await heldClaim(store, tag, rank, me, mine, arrival.held, ctx);
    if (claim.twice) throw claim.twice;
    set = await store.watch(watchKeys, timeoutMs);
  } else if (set.length === 0 && deadline - Date.now() > 5) {
    // The server's longest wait passed before ours.
    set = await store.watch(watchKeys, deadline - Date.now());
  }
  if (set.includes(dupKey)) {
    const dup = await duplicateRank(store, tag, ctx);
    if (dup) throw dup;
  }
  if (set.includes(done)) return;
  const keys = Array.from({ length: worldSize }, (_, r) => `${tag}/${r}`);
  const present = new Set(await store.watch(keys, 0));
  const missing = keys.flatMap((k, r) => present.has(k) ? [] : [r]);
  if (missing.length === 0) return; // the last rank is setting `done` right now
  const who = missing.length === 1 ? `rank ${missing[0]}` : `ranks ${missing.join(", ")}`;
  throw new RendezvousError(`${who} of ${worldSize} never arrived within ${timeoutMs} ms`, {
    rank,
    op,
    cause: new StoreTimeoutError(`timed out after ${timeoutMs} ms waiting for "${done}"`, ctx),
  });
}

function checkRankAndSize(
  what: string,
  rank: number | undefined,
  worldSize: number | undefined,
  op: string,
): { rank: number; worldSize: number } {
  if (worldSize === undefined) {
    throw new RendezvousError(`${what} needs WORLD_SIZE (or the worldSize option)`, { op });
  }
  if (rank === undefined) throw new RendezvousError(`${what} needs RANK (or the rank option)`, { op });
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new RendezvousError(`world size must be a positive integer, got ${worldSize}`, { rank, op });
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new RendezvousError(`rank must be an integer in [0, ${worldSize}), got ${rank}`, { rank, op });
  }
  return { rank, worldSize };
}

/**
 * Returns when the server on host:port (which this rank 0 could not bind) proves it holds `token`;
 * throws AuthError naming the address when it cannot, RendezvousError when it does not answer.
 */
async function checkTakenPort(
  host: string,
  port: number,
  token: string,
  rank: number,
  timeoutMs: number,
  bindError: unknown,
): Promise<void> {
  const op = "createStore";
  const probe = new TcpStore({ host, port, token, timeoutMs, rank });
  try {
    await probe.check([]);
  } catch (err) {
    if (err instanceof AuthError) {
      throw new AuthError(
        `rank 0 cannot serve the store on ${host}:${port}: the port is taken by something that cannot ` +
          `prove it holds the job token (another job's store, or an impostor; nothing secret was sent to it)`,
        { rank, op, cause: err },
      );
    }
    throw new RendezvousError(
      `rank 0 could not start the store server on ${host}:${port}: ${errText(bindError)}`,
      { rank, op, cause: bindError },
    );
  } finally {
    await probe.close();
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
