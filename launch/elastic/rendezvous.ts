/**
 * @module
 * Node rendezvous over a Store, in numbered rounds: agents join the open round, which closes at MAX
 * nodes or once MIN have joined and a last-call window passed without another; node order gives
 * GROUP_RANK. A node that finds the round closed asks for the next one; one beyond MAX is refused.
 * What a round is for (starting workers, restarts) is the agent's business.
 */

import { AbortedError, RendezvousError, StoreTimeoutError } from "../../errors.ts";
import type { Store } from "../../transports/store/mod.ts";

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
  /** Poll period while waiting, in ms (default 50). */
  pollMs?: number;
  /** The run id, named in messages. */
  runId: string;
  /** Receives progress messages. */
  log?: (message: string) => void;
  /** Aborting it ends the wait with an AbortedError. */
  signal?: AbortSignal;
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
 * Joins the next round that admits this node and waits for it to close; returns the world and this
 * node's GROUP_RANK. Throws RendezvousError when the run is full (MAX nodes already in a running
 * round) or fewer than MIN nodes joined within the join timeout; AbortedError when `signal` aborts.
 */
export async function joinRound(o: JoinOptions): Promise<{ world: World; groupRank: number }> {
  const op = "rendezvous";
  const poll = o.pollMs ?? 50;
  const deadline = Date.now() + o.joinTimeoutMs;
  let round = Math.max(o.fromRound ?? 0, await currentRound(o.store));
  if (o.fromRound !== undefined) round = await advanceRound(o.store, o.fromRound);
  for (;;) {
    const running = await closedWorld(o.store, round);
    if (running !== undefined) {
      // Late: the round is running without us. Admit us into the next one, if there is room.
      if (running.nodes.length >= o.max) throw full(o, running);
      o.log?.(`round ${round} is running with ${running.nodes.length} node(s); asking for a new round`);
      await o.store.add(roundKey(round, "waiting"), 1);
      round = await advanceRound(o.store, round + 1);
      continue;
    }
    const slot = (await o.store.add(roundKey(round, "joined"), 1)) - 1;
    if (slot >= o.max) {
      throw full(o, { round, nodes: [] }, slot + 1);
    }
    await o.store.set(roundKey(round, `node/${slot}`), JSON.stringify(o.me));
    const got = await waitForClose(o, round, slot, poll, deadline);
    if (got !== undefined) return got;
    // The round closed without us (we joined as it closed): ask for the next one.
    await o.store.add(roundKey(round, "waiting"), 1);
    round = await advanceRound(o.store, round + 1);
  }
  function full(o: JoinOptions, w: World, count = w.nodes.length): RendezvousError {
    return new RendezvousError(
      `run "${o.runId}" is full: round ${w.round} already has ${count} node(s) and --nnodes allows at ` +
        `most ${o.max}; node ${o.me.id} (${o.me.addr}) is refused. Raise MAX in --nnodes MIN:MAX or start ` +
        `it once a node has left.`,
      { op },
    );
  }
}

async function waitForClose(
  o: JoinOptions,
  round: number,
  slot: number,
  poll: number,
  deadline: number,
): Promise<{ world: World; groupRank: number } | undefined> {
  const worldKey = roundKey(round, "world");
  let last = -1;
  let changedAt = Date.now();
  for (;;) {
    if (o.signal?.aborted) {
      throw new AbortedError(`stopped while waiting for round ${round} of run "${o.runId}" to close`, {
        op: "rendezvous",
      });
    }
    const w = await closedWorld(o.store, round);
    if (w !== undefined) {
      const groupRank = w.nodes.findIndex((n) => n.id === o.me.id);
      return groupRank < 0 ? undefined : { world: w, groupRank };
    }
    const count = await o.store.add(roundKey(round, "joined"), 0);
    const now = Date.now();
    if (count !== last) {
      last = count;
      changedAt = now;
    }
    if (count >= o.max || (count >= o.min && now - changedAt >= o.lastCallMs)) {
      await close(o.store, round, Math.min(count, o.max));
      continue;
    }
    if (now >= deadline) {
      throw new RendezvousError(
        `run "${o.runId}": only ${count} of at least ${o.min} node(s) joined round ${round} within ` +
          `${o.joinTimeoutMs} ms (this node: ${o.me.id}, slot ${slot})`,
        { op: "rendezvous" },
      );
    }
    try {
      await o.store.wait([worldKey], Math.min(poll, Math.max(1, deadline - now)));
    } catch (err) {
      if (!(err instanceof StoreTimeoutError)) throw err;
    }
  }
}

/** Closes round `round` with its first `n` joiners; the first closer's world stands. */
async function close(store: Store, round: number, n: number): Promise<void> {
  const keys = Array.from({ length: n }, (_, i) => roundKey(round, `node/${i}`));
  await store.wait(keys, 10_000);
  const nodes: { info: NodeInfo; slot: number }[] = [];
  for (let i = 0; i < n; i++) {
    nodes.push({ info: JSON.parse(dec.decode(await store.get(keys[i]))) as NodeInfo, slot: i });
  }
  nodes.sort((a, b) => (a.info.nodeRank ?? Infinity) - (b.info.nodeRank ?? Infinity) || a.slot - b.slot);
  const world: World = { round, nodes: nodes.map((x) => x.info) };
  await store.compareSet(roundKey(round, "world"), "", enc.encode(JSON.stringify(world)));
}
