/**
 * @module
 * Node rendezvous over a Store, in numbered rounds: agents join the open round, which closes at MAX
 * nodes or once MIN have joined and a last-call window passed without another; node order gives
 * GROUP_RANK. Membership is the node records written, never the join counter alone, so a stray or
 * duplicate `add` cannot break a round. A node that finds the round closed asks for the next one; at a
 * full round it waits while a member is silent (a node restarting) and is refused when every member
 * beats. Windows run on a monotonic clock (liveness.ts). What a round is for is the agent's business.
 */

import { AbortedError, RendezvousError, StoreTimeoutError } from "../../errors.ts";
import type { Store } from "../../transports/store/mod.ts";
import { type Clock, HeartbeatWatch, monotonicClock } from "./liveness.ts";

/** What a node tells the others when it joins. */
export interface NodeInfo {
  /** A unique id of this agent (host name and a random suffix). */
  id: string;
  /** The address other nodes reach it at (for messages). */
  addr: string;
  /** Its number of workers. */
  nproc: number;
  /** `--node-rank`, when given: nodes that have one sort by it, before the others. */
  nodeRank?: number;
}

/** The result of a closed round: the nodes in GROUP_RANK order. */
export interface World {
  /** The round number. */
  round: number;
  /** The member nodes; index = GROUP_RANK. */
  nodes: NodeInfo[];
}

/** Options of {@link joinRound}. */
export interface JoinOptions {
  /** The rendezvous store, already prefixed for this run. */
  store: Store;
  /** This node. */
  me: NodeInfo;
  /** Minimum number of nodes. */
  min: number;
  /** Maximum number of nodes. */
  max: number;
  /** Join at this round or later (default: the current one). */
  fromRound?: number;
  /** Once MIN nodes joined, how long to wait for more before closing, in ms. */
  lastCallMs: number;
  /** How long to wait for MIN nodes, in ms. */
  joinTimeoutMs: number;
  /**
   * At a full round: a member whose heartbeat stands still this long is taken for gone, and this node
   * waits for the next round instead of being refused, in ms (default 30000).
   */
  heartbeatTimeoutMs?: number;
  /** Poll period while waiting, in ms (default 50). */
  pollMs?: number;
  /** The run id, named in messages. */
  runId: string;
  /** Receives progress messages. */
  log?: (message: string) => void;
  /** Aborting it ends the wait with an AbortedError. */
  signal?: AbortSignal;
  /** The clock windows and deadlines are measured on (default: monotonic). */
  clock?: Clock;
  /** Called at every poll; what it throws ends the rendezvous (e.g. the store was replaced). */
  check?: () => Promise<void>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The store key of round `r`'s `what`. */
export function roundKey(r: number, what: string): string {
  return `r${r}/${what}`;
}

/** The round currently open or running (0 when none was opened yet). */
export async function currentRound(store: Store): Promise<number> {
  const v = await store.compareSet("round", "", "0");
  return Number(dec.decode(v));
}

/** Moves the run to round `next` unless it is there or beyond already; returns the current round. */
export async function advanceRound(store: Store, next: number): Promise<number> {
  for (;;) {
    const cur = await currentRound(store);
    if (cur >= next) return cur;
    const after = Number(dec.decode(await store.compareSet("round", String(cur), String(next))));
    if (after >= next) return after;
  }
}

/** The world of round `r` if it has closed, else undefined. */
export async function closedWorld(store: Store, r: number): Promise<World | undefined> {
  const key = roundKey(r, "world");
  if (!(await store.check([key]))) return undefined;
  return JSON.parse(dec.decode(await store.get(key))) as World;
}

/**
 * Asks the nodes running round `r` for a new one: a numbered record naming `me` (the count alone is
 * not trusted, see {@link waitingNodes}).
 */
export async function askForNextRound(store: Store, r: number, me: NodeInfo): Promise<void> {
  const k = (await store.add(roundKey(r, "waiting"), 1)) - 1;
  await store.set(roundKey(r, `wait/${k}`), me.id);
}

/** How many nodes asked for a round after `r` (records written, so a stray `add` counts for nothing). */
export async function waitingNodes(store: Store, r: number): Promise<number> {
  const count = await store.add(roundKey(r, "waiting"), 0);
  let n = 0;
  for (let k = 0; k < count; k++) if (await store.check([roundKey(r, `wait/${k}`)])) n++;
  return n;
}

/**
 * Joins the next round that admits this node and waits for it to close; returns the world and this
 * node's GROUP_RANK. Throws RendezvousError when the run is full (MAX nodes running and every one of
 * them heartbeating) or has ended, or fewer than MIN nodes joined within the join timeout; AbortedError
 * when `signal` aborts.
 */
export async function joinRound(o: JoinOptions): Promise<{ world: World; groupRank: number }> {
  const clock = o.clock ?? monotonicClock;
  const poll = o.pollMs ?? 50;
  const deadline = clock.now() + o.joinTimeoutMs;
  let round = Math.max(o.fromRound ?? 0, await currentRound(o.store));
  if (o.fromRound !== undefined) round = await advanceRound(o.store, o.fromRound);
  for (;;) {
    const running = await closedWorld(o.store, round);
    if (running !== undefined) {
      // Late: the round runs (or closed as we joined it) without us. Ask for the next one when there is
      // room, or a member is gone; else we are refused.
      await waitForRoom(o, running, poll, deadline);
      round = await advanceRound(o.store, round + 1);
      continue;
    }
    const slot = (await o.store.add(roundKey(round, "joined"), 1)) - 1;
    await o.store.set(roundKey(round, `node/${slot}`), JSON.stringify(o.me));
    const got = await waitForClose(o, round, slot, poll, deadline);
    if (got !== undefined) return got;
  }
}

/**
 * Round `world.round` runs without this node. Below MAX: asks for the next round at once. At MAX:
 * watches the members' heartbeats; when one stands still for the heartbeat timeout (a node that died and
 * is restarting: this may be it), asks for the next round; when every member beats, throws "full".
 * Returns early when the members moved to a later round on their own.
 */
async function waitForRoom(o: JoinOptions, world: World, poll: number, deadline: number): Promise<void> {
  const clock = o.clock ?? monotonicClock;
  const r = world.round;
  const n = world.nodes.length;
  if (n < o.max) {
    o.log?.(`round ${r} is running with ${n} node(s); asking for a new round`);
    await askForNextRound(o.store, r, o.me);
    return;
  }
  const watch = new HeartbeatWatch(o.heartbeatTimeoutMs ?? 30_000, clock);
  let said = false;
  for (;;) {
    await step(o, r, "for room in a full round");
    if ((await currentRound(o.store)) > r) return;
    if (await o.store.check(world.nodes.map((_, g) => roundKey(r, `exited/${g}`)))) {
      throw new RendezvousError(
        `run "${o.runId}" has ended: every node of its last round (${r}) has exited; node ${o.me.id} ` +
          `(${o.me.addr}) came too late. Use a new --rdzv-id for a new job.`,
        { op: "rendezvous" },
      );
    }
    let alive = 0;
    for (let g = 0; g < n; g++) {
      const left = await o.store.check([roundKey(r, `left/${g}`)]);
      const silent = left ? 0 : watch.observe(g, await o.store.add(roundKey(r, `hb/${g}`), 0));
      if (silent !== undefined) {
        const why = left ? "has left" : `sent no heartbeat for ${Math.round(silent)} ms`;
        o.log?.(`round ${r} is full, but node ${g} (${world.nodes[g].addr}) ${why}; asking for a new round`);
        await askForNextRound(o.store, r, o.me);
        return;
      }
      if (watch.moved(g)) alive++;
    }
    if (alive === n) throw full(o, world);
    if (!said) {
      said = true;
      o.log?.(`round ${r} is full (${n} node(s)); checking that each of them is alive`);
    }
    if (clock.now() >= deadline) throw full(o, world);
    await pause(o, roundKey(r + 1, "joined"), poll, deadline);
  }
}

function full(o: JoinOptions, w: World): RendezvousError {
  return new RendezvousError(
    `run "${o.runId}" is full: round ${w.round} already has ${w.nodes.length} node(s) and --nnodes allows ` +
      `at most ${o.max}; node ${o.me.id} (${o.me.addr}) is refused. Raise MAX in --nnodes MIN:MAX or start ` +
      `it once a node has left.`,
    { op: "rendezvous" },
  );
}

/**
 * Waits for round `round` to close: counts the node records written (slots whose record is missing,
 * from a stray `add` or a node still writing, are skipped), closes it at MAX records or at MIN after a
 * quiet last call. Returns undefined when it closed without this node.
 */
async function waitForClose(
  o: JoinOptions,
  round: number,
  slot: number,
  poll: number,
  deadline: number,
): Promise<{ world: World; groupRank: number } | undefined> {
  const clock = o.clock ?? monotonicClock;
  const present = new Set<number>();
  let last = -1;
  let changedAt = clock.now();
  for (;;) {
    await step(o, round, "to close");
    const w = await closedWorld(o.store, round);
    if (w !== undefined) {
      const groupRank = w.nodes.findIndex((n) => n.id === o.me.id);
      return groupRank < 0 ? undefined : { world: w, groupRank };
    }
    const count = await o.store.add(roundKey(round, "joined"), 0);
    for (let s = 0; s < count; s++) {
      if (!present.has(s) && (await o.store.check([roundKey(round, `node/${s}`)]))) present.add(s);
    }
    const now = clock.now();
    if (present.size !== last) {
      last = present.size;
      changedAt = now;
    }
    if (present.size >= o.max || (present.size >= o.min && now - changedAt >= o.lastCallMs)) {
      await close(o.store, round, [...present].sort((a, b) => a - b).slice(0, o.max));
      continue;
    }
    if (now >= deadline) {
      const stray = count - present.size;
      throw new RendezvousError(
        `run "${o.runId}": only ${present.size} of at least ${o.min} node(s) joined round ${round} within ` +
          `${o.joinTimeoutMs} ms (this node: ${o.me.id}, slot ${slot}${
            stray > 0 ? `; ${stray} slot(s) counted without a node` : ""
          })`,
        { op: "rendezvous" },
      );
    }
    await pause(o, roundKey(round, "world"), poll, deadline);
  }
}

/** One poll's checks: aborted, and the caller's own (e.g. the store still the same). */
async function step(o: JoinOptions, round: number, what: string): Promise<void> {
  if (o.signal?.aborted) {
    throw new AbortedError(`stopped while waiting for round ${round} of run "${o.runId}" ${what}`, {
      op: "rendezvous",
    });
  }
  await o.check?.();
}

/** Waits up to one poll period for `key` (woken early when it is set). */
async function pause(o: JoinOptions, key: string, poll: number, deadline: number): Promise<void> {
  const left = deadline - (o.clock ?? monotonicClock).now();
  try {
    await o.store.wait([key], Math.min(poll, Math.max(1, left)));
  } catch (err) {
    if (!(err instanceof StoreTimeoutError)) throw err;
  }
}

/** Closes round `round` with the nodes of `slots` (records present); the first closer's world stands. */
async function close(store: Store, round: number, slots: number[]): Promise<void> {
  const nodes: { info: NodeInfo; slot: number }[] = [];
  for (const s of slots) {
    nodes.push({
      info: JSON.parse(dec.decode(await store.get(roundKey(round, `node/${s}`)))) as NodeInfo,
      slot: s,
    });
  }
  nodes.sort((a, b) => (a.info.nodeRank ?? Infinity) - (b.info.nodeRank ?? Infinity) || a.slot - b.slot);
  const world: World = { round, nodes: nodes.map((x) => x.info) };
  await store.compareSet(roundKey(round, "world"), "", enc.encode(JSON.stringify(world)));
}
