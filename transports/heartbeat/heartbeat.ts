/**
 * @module
 * Liveness between collectives: each rank runs a heartbeat thread (`heartbeat_worker.ts`) that keeps
 * a link to its ring neighbours and reports a neighbour lost when its link closes without a goodbye
 * (the process ended or was killed: noticed within the grace, half a second by default) or stays
 * silent past the timeout (its host vanished or froze: 10 s by default). The news goes round the
 * ring, so every rank hears it, and each reports a `PeerLostError` naming the lost rank, even while
 * no collective runs. A rank whose group broke sends its cause round the ring the same way
 * ({@link Heartbeat.tell}): ranks waiting on other peers learn the root cause (a mismatch, say)
 * instead of waiting for their timeout. TCP keepalive cannot do this here: Deno exposes no socket to set
 * TCP_KEEPIDLE on, and the system default waits two hours.
 *
 * It costs the training thread nothing per message: the links are the thread's own, each carries
 * 8 bytes per interval, and the addresses go through the store once, in the background.
 */

import { SHARE_ENV, Worker } from "node:worker_threads";
import { type ChoirError, PeerLostError } from "../../errors.ts";
import { decodeCause, encodeCause, MAX_CAUSE_BYTES } from "../abort_cause.ts";
import { threadMayLoad } from "../permission.ts";
import { onKeySet } from "../store/key_watcher.ts";
import type { Store } from "../store/store.ts";
import { type FromHeartbeat, type HeartbeatInit, LostWhy, type ToHeartbeat } from "./protocol.ts";

/**
 * Defaults: a frame each second, lost after 10 s of silence or half a second after a close; the
 * world group's thread starts a second after the group forms ({@link deferHeartbeat}).
 */
export const HEARTBEAT_DEFAULTS = {
  intervalMs: 1000,
  timeoutMs: 10_000,
  graceMs: 500,
  startMs: 1000,
} as const;

/** Options of {@link startHeartbeat}. */
export interface HeartbeatOptions {
  /** This rank. */
  rank: number;
  /** Number of ranks. */
  size: number;
  /** The job token each link proves it holds (the transport's hello). */
  token: string;
  /** The job's store, prefixed per group: addresses are published under `hb/<rank>`. */
  store: Store;
  /** Address to listen on. */
  bind: string;
  /** Address neighbours dial, when it differs from `bind`. */
  advertise?: string;
  /** Milliseconds between frames (default 1000). */
  intervalMs?: number;
  /** Milliseconds of silence after which a neighbour is lost (default 10000). */
  timeoutMs?: number;
  /** Milliseconds a link that closed without a goodbye waits before its peer is lost (default 500). */
  graceMs?: number;
  /**
   * Called with the error to break the group with: once per lost rank (a PeerLostError naming it),
   * and once per rank whose cause came round the ring (that cause, as this rank reports it).
   */
  onNews: (err: ChoirError) => void;
}

/** A running heartbeat; {@link Heartbeat.stop} says goodbye to the neighbours and ends the thread. */
export interface Heartbeat {
  /**
   * Sends why this rank's group broke round the ring; resolves once it is on the wire to the
   * neighbours (at most after 300 ms), so a program that exits right after its error still tells.
   */
  tell(cause: Error): Promise<void>;
  /** Says goodbye (neighbours then do not report this rank lost) and ends the thread. */
  stop(): Promise<void>;
}

/**
 * A heartbeat thread spawned ahead of need, waiting for {@link startHeartbeat} to give it its ring.
 * Creating a thread blocks the caller for about 0.1 s; a program that re-forms its groups while
 * training (fault tolerance) spawns the next one while it has time to spare.
 */
export interface HeartbeatThread {
  /** The thread. */
  readonly worker: Worker;
  /** Ends it unused. */
  discard(): Promise<void>;
}

const WORKER_URL = new URL("./heartbeat_worker.ts", import.meta.url);

/** Whether a thread may load the heartbeat's module (from a local checkout it needs read access). */
function mayLoad(): boolean {
  return threadMayLoad(WORKER_URL);
}

/** Spawns a heartbeat thread that waits for its ring; undefined when its module may not be read. */
export function spawnHeartbeatThread(): HeartbeatThread | undefined {
  if (!mayLoad()) return undefined;
  const worker = new Worker(WORKER_URL, { workerData: null, env: SHARE_ENV });
  worker.unref();
  return {
    worker,
    async discard() {
      await worker.terminate();
    },
  };
}

/**
 * Starts this rank's heartbeat thread (or hands `thread`, spawned earlier, its ring) and, in the
 * background, publishes its address and dials the next rank in the ring. Returns at once: start-up
 * does not wait for it. Undefined when the thread's module may not be read (a local checkout run
 * without read permission for it).
 */
export function startHeartbeat(o: HeartbeatOptions, thread?: HeartbeatThread): Heartbeat | undefined {
  // A thread loads its module itself: from a local checkout that needs read access to it. Without it
  // (a narrowly permitted program) the job runs without heartbeat rather than failing.
  if (!thread && !mayLoad()) return undefined;
  const init: HeartbeatInit = {
    rank: o.rank,
    size: o.size,
    token: o.token,
    bind: o.bind,
    intervalMs: o.intervalMs ?? HEARTBEAT_DEFAULTS.intervalMs,
    timeoutMs: o.timeoutMs ?? HEARTBEAT_DEFAULTS.timeoutMs,
    graceMs: o.graceMs ?? HEARTBEAT_DEFAULTS.graceMs,
  };
  const worker = thread?.worker ?? new Worker(WORKER_URL, { workerData: init, env: SHARE_ENV });
  worker.unref(); // a program that ends without destroy() must still end
  if (thread) worker.postMessage({ type: "init", init } satisfies ToHeartbeat);
  let stopped = false;
  let stoppedAck: () => void = () => {};
  const acked = new Promise<void>((r) => stoppedAck = r);
  let toldAck: () => void = () => {};
  const told = new Promise<void>((r) => toldAck = r);
  const post = (m: ToHeartbeat) => worker.postMessage(m);
  worker.on("message", (m: FromHeartbeat) => {
    if (m.type === "ready") void publishAndDial(o, m.port, post, () => stopped);
    else if (m.type === "stopped") stoppedAck();
    else if (m.type === "told") toldAck();
    else if (stopped) return;
    else if (m.type === "lost") o.onNews(lostError(o.rank, m.peer, m.why, m.via, init));
    else if (m.type === "cause") {
      const err = decodeCause(m.bytes, o.rank, "heartbeat");
      if (err) o.onNews(err);
    }
  });
  const gone = () => {
    stoppedAck();
    toldAck();
  };
  worker.on("error", gone);
  worker.on("exit", gone);
  let telling: Promise<void> | undefined;
  return {
    tell(cause) {
      if (stopped) return Promise.resolve();
      if (!telling) {
        post({ type: "cause", bytes: encodeCause(cause, o.rank).slice(0, MAX_CAUSE_BYTES) });
        telling = Promise.race([told, new Promise<void>((r) => setTimeout(r, 300))]);
      }
      return telling;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      post({ type: "stop" });
      // The goodbyes are tiny; never let a stuck thread hold up destroy().
      await Promise.race([acked, new Promise((r) => setTimeout(r, 500))]);
      await worker.terminate();
    },
  };
}

/** Publishes this rank's heartbeat address and tells the thread where the next rank listens. */
async function publishAndDial(
  o: HeartbeatOptions,
  port: number,
  post: (m: ToHeartbeat) => void,
  stopped: () => boolean,
): Promise<void> {
  try {
    await o.store.set(`hb/${o.rank}`, `${o.advertise ?? o.bind}:${port}`);
    const next = (o.rank + 1) % o.size;
    const addr = new TextDecoder().decode(await o.store.get(`hb/${next}`));
    const at = addr.lastIndexOf(":");
    if (stopped() || at < 0) return;
    post({ type: "dial", peer: next, hostname: addr.slice(0, at), port: Number(addr.slice(at + 1)) });
  } catch {
    // The store went away (the job is ending) or the neighbour never published: the collectives still
    // find a lost peer by themselves, only later.
  }
}

function lostError(
  rank: number,
  peer: number,
  why: LostWhy,
  via: number,
  init: HeartbeatInit,
): PeerLostError {
  const what = why === LostWhy.Silent
    ? `sent no heartbeat for ${init.timeoutMs / 1000} s (its host or network is gone, or it froze)`
    : "ended without destroy() (its heartbeat link closed: killed or exited)";
  const who = via === rank ? "" : ` (rank ${via} noticed and told the ring)`;
  return new PeerLostError(`rank ${peer} is lost: it ${what}${who}`, { rank, peer, op: "heartbeat" });
}

/** What a deferred heartbeat needs to pass a cause on before its thread is up. */
export interface EarlyNews {
  /** The job's store, prefixed as the heartbeat's (the cause is published under `cause`). */
  store: Store;
  /** This rank. */
  rank: number;
  /** As {@link HeartbeatOptions.onNews}. */
  onNews: (err: ChoirError) => void;
}

/** The store key under which a cause told before the heartbeat threads are up is published. */
const EARLY_CAUSE_KEY = "cause";

/**
 * A heartbeat whose thread starts `afterMs` from now (on an unref'd timer, so a program that ends
 * sooner never creates it). Creating the thread blocks the calling thread for 40-100 ms here; a job's
 * start-up would pay it on every rank at once, on its critical path, so the world group starts its
 * heartbeat once the job runs. Until then a lost rank is found by the collectives themselves (a closed
 * link, a dead segment owner), and a cause told is published in the store, where every rank's shared
 * background watch (key_watcher.ts: no polling) hears it.
 */
export function deferHeartbeat(
  start: () => Heartbeat | undefined,
  afterMs: number,
  early?: EarlyNews,
): Heartbeat {
  let live: Heartbeat | undefined;
  let stopped = false;
  const timer = setTimeout(() => {
    if (!stopped) live = start();
  }, afterMs);
  Deno.unrefTimer(timer);
  const sub = early && onKeySet(early.store, EARLY_CAUSE_KEY, async () => {
    try {
      const err = decodeCause(await early.store.get(EARLY_CAUSE_KEY), early.rank, "heartbeat");
      if (err && !stopped) early.onNews(err);
    } catch { /* the store is gone with the job */ }
  });
  let telling: Promise<void> | undefined;
  const publish = (cause: Error): Promise<void> => {
    if (!early) return Promise.resolve();
    const bytes = encodeCause(cause, early.rank).slice(0, MAX_CAUSE_BYTES);
    // As the thread's tell: on its way within 300 ms, so a program that exits on its error still tells.
    return Promise.race([
      early.store.set(EARLY_CAUSE_KEY, bytes).catch(() => {}),
      new Promise<void>((r) => setTimeout(r, 300)),
    ]);
  };
  return {
    tell(cause) {
      if (live) return live.tell(cause);
      if (stopped) return Promise.resolve();
      return telling ??= publish(cause);
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      sub?.stop();
      await live?.stop();
    },
  };
}
