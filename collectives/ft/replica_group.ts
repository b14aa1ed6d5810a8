/**
 * @module
 * {@link ReplicaGroup}: the replicas of a fault-tolerant data-parallel job, regrouped in place. Each
 * quorum (a set of live replicas agreed through the store, quorum_store.ts) gets a fresh ProcessGroup
 * (`openGroup` under its own tag) and its own heartbeat, so a killed member is reported within about
 * half a second; each step ends with the commit vote (commit_vote.ts), one small allreduce over that
 * group: the store is touched only when the membership changes. When a member is lost or
 * newcomers wait, the survivors agree on the next quorum and open its group, with no process restart.
 * What the training state is, and sending it to newcomers, is left to the layer above (ddp/ft/).
 */

import { type ChoirEnv, DEFAULT_TIMEOUT_MS, readEnv } from "../../config.ts";
import {
  AbortedError,
  type ChoirError,
  ChoirError as ChoirErrorClass,
  PeerLostError,
  RendezvousError,
} from "../../errors.ts";
import {
  type Heartbeat,
  HEARTBEAT_DEFAULTS,
  type HeartbeatThread,
  spawnHeartbeatThread,
  startHeartbeat,
} from "../../transports/heartbeat/heartbeat.ts";
import { createStore, PrefixStore, type Rendezvous, type Store } from "../../transports/store/mod.ts";
import { parseInitMethod } from "../../transports/store/init_method.ts";
import { StoreTimeoutError } from "../../errors.ts";
import { recorderCapacity } from "../diagnostics/flight_recorder.ts";
import { forcedAlgorithm, listenAddress } from "../init.ts";
import { type JobContext, openGroup } from "../open_group.ts";
import type { ProcessGroup } from "../process_group.ts";
import { commitVote } from "./commit_vote.ts";
import {
  admitJoiners,
  admitKey,
  announce,
  type Announcement,
  announcements,
  DONE,
  formFirst,
  joinerKey,
  JOINERS,
  nextRecord,
  pendingJoiners,
  proposeRecord,
  type QuorumRecord,
  readRecord,
  recordKey,
  registerJoiner,
} from "./quorum_store.ts";

/** Options of {@link ReplicaGroup.join}; anything left out comes from the environment (env://). */
export interface ReplicaGroupOptions {
  /** This replica's id (default: `RANK`). A restarted worker keeps its id; a new one may take any. */
  replicaId?: number;
  /** Replicas that found the job, ids `0..n-1` (default: `WORLD_SIZE`). Later ones join as newcomers. */
  initialReplicas?: number;
  /** Fewest replicas a quorum may have; with fewer alive, re-forming waits for newcomers (default 1). */
  minReplicas?: number;
  /**
   * `env://` (default), `tcp://host:port` or `file:///path`. The store must outlive every worker: under
   * `deno task launch` the launcher serves it; where replica 0 serves it, its death ends the job.
   */
  initMethod?: string;
  /** The job token (default: `CHOIR_TOKEN`). */
  token?: string;
  /** Timeout of store calls, of forming the first quorum and of every collective, in ms (default: `CHOIR_TIMEOUT` or 5 min). */
  timeoutMs?: number;
  /** How long opening one quorum's group may take before the survivors re-form without the absent, in ms (default 60000). */
  formTimeoutMs?: number;
  /**
   * How long re-forming waits for a member of the last quorum that neither announced itself nor was
   * reported lost, in ms (default: the heartbeat timeout plus two intervals; a killed process is
   * reported lost by the heartbeat within about half a second, and a restarted one by its newcomer
   * registration under the same id).
   */
  settleTimeoutMs?: number;
  /** Transport of every quorum's group (default `CHOIR_TRANSPORT`, else `auto`). */
  transport?: "auto" | "tcp" | "shm";
  /** Heartbeat of every quorum (as `initProcessGroup`'s); `false` leaves losses to timeouts. */
  heartbeat?: false | { intervalMs?: number; timeoutMs?: number };
  /** Environment to read instead of the process's. */
  env?: ChoirEnv;
  /**
   * Receives the group's messages (re-forming, admissions); default: none, but the warning that replica
   * 0 serves the store (its death then ends the job) goes to `console.warn`.
   */
  log?: (message: string) => void;
}

/** One quorum: the members that run the steps together, and the group they run them over. */
export interface Quorum {
  /** Quorum number: 0 for the founders, one more at every re-forming. */
  readonly id: number;
  /** Replica ids of the members in group-rank order (ascending). */
  readonly members: readonly number[];
  /** This replica's rank in {@link pg}. */
  readonly rank: number;
  /** Number of members. */
  readonly size: number;
  /** Members that must receive the training state before the next step (replica ids). */
  readonly newcomers: readonly number[];
  /** Group rank of the member that sends the state (the lowest one holding it). */
  readonly source: number;
  /** Committed steps of the members holding the state. */
  readonly step: number;
  /** Whether this replica must receive the state. */
  readonly isNewcomer: boolean;
  /** The quorum's ProcessGroup (its own connections; broken when a member is lost). */
  readonly pg: ProcessGroup;
}

/** A step's outcome as this member learned it (the same on every member that learned it). */
export interface Decision {
  /** Apply the step's update (every member voted ok). */
  readonly commit: boolean;
  /** Re-form before the next step: a member failed, or newcomers wait to be admitted. */
  readonly reconfigure: boolean;
  /**
   * False when this member voted ok but did not learn the outcome (the vote broke off): it did not
   * apply the step, though others may have; the next quorum then hands it their state.
   */
  readonly known: boolean;
}

/** The waits of a replica group, resolved from the options. */
type Limits = Required<
  Pick<ReplicaGroupOptions, "minReplicas" | "timeoutMs" | "formTimeoutMs" | "settleTimeoutMs">
>;

/** The quorum this replica is in, with what tells of its losses. */
interface Current {
  rec: QuorumRecord;
  pg: ProcessGroup | null;
  heartbeat?: Heartbeat;
  /** Replica ids the heartbeat reported lost. */
  lost: Set<number>;
  /** Resolves at the first loss or break the heartbeat reports. */
  broken: Promise<void>;
  breakNow: () => void;
  /** The first error the heartbeat reported (breaks the group once it is open). */
  news?: ChoirError;
  /** Newcomer registrations counted last (group rank 0 only), and whether a count is on its way. */
  joiners: number;
  counting: boolean;
  /** When group rank 0 last asked for the count (performance.now()). */
  countedAt: number;
}

const dec = new TextDecoder();
/** Grace of a quorum's heartbeat for a link closed without goodbye (the world group's is 0.5 s). */
const FT_GRACE_MS = 200;
/** Group rank 0 counts the newcomers' registrations at most this often (one store request each). */
const JOINER_POLL_MS = 250;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The replicas of a fault-tolerant job (torchft's shape: a quorum per membership, a commit vote per
 * step, newcomers admitted at step boundaries). `join()` forms the founders' quorum or registers as a
 * newcomer and waits to be admitted; `vote()` ends each step; `reconfigure()` agrees on the next
 * quorum after a loss or to admit newcomers, opening its group in place. Use it through
 * `FtManager` (`@choir/choir/ddp`), which adds the training state and its recovery.
 *
 * @example
 * ```ts ignore
 * const group = await ReplicaGroup.join(); // env://, under `deno task launch --restart-failed 3`
 * let step = 0;
 * for (;;) {
 *   const q = group.quorum!;
 *   let ok = true;
 *   try {
 *     await q.pg.allReduce(grads);
 *   } catch {
 *     ok = false;
 *   }
 *   const d = await group.vote(step, ok);
 *   if (d.commit) step++; // apply the update on every member, or on none
 *   if (d.reconfigure) await group.reconfigure({ step, synced: true });
 * }
 * ```
 */
export class ReplicaGroup {
  /** This replica's id. */
  readonly replicaId: number;
  readonly #store: Store;
  readonly #rdzv: Rendezvous;
  readonly #job: JobContext;
  readonly #o: Limits;
  readonly #heartbeat: { intervalMs: number; timeoutMs: number } | null;
  readonly #log: (message: string) => void;
  #current: Current | null = null;
  /** The next quorum's heartbeat thread, spawned ahead: spawning blocks for about 0.1 s. */
  #spare: HeartbeatThread | undefined;
  #finishedAt: number | null = null;
  #founder = false;
  #closed = false;

  private constructor(
    replicaId: number,
    rdzv: Rendezvous,
    job: JobContext,
    o: Limits,
    heartbeat: { intervalMs: number; timeoutMs: number } | null,
    log: (message: string) => void,
  ) {
    this.replicaId = replicaId;
    this.#rdzv = rdzv;
    this.#store = job.store;
    this.#job = job;
    this.#o = o;
    this.#heartbeat = heartbeat;
    this.#log = log;
  }

  /**
   * Joins the job: a founder (id below `initialReplicas`, arriving before the first quorum formed)
   * waits for the other founders and forms quorum 0; anyone else registers as a newcomer and returns
   * once a quorum admitted it (then `quorum.isNewcomer` is true), or once the job has finished
   * (`finishedAt` is set and `quorum` is null). Throws RendezvousError when the founders do not all
   * arrive within the timeout.
   */
  static async join(opts: ReplicaGroupOptions = {}): Promise<ReplicaGroup> {
    const env = opts.env ?? readEnv();
    const op = "ReplicaGroup.join";
    const replicaId = opts.replicaId ?? env.rank;
    const initial = opts.initialReplicas ?? env.worldSize;
    if (replicaId === undefined || !Number.isInteger(replicaId) || replicaId < 0) {
      throw new RendezvousError(
        `a replica needs a non-negative integer id (RANK or replicaId), got ${replicaId}`,
        {
          op,
        },
      );
    }
    if (initial === undefined || !Number.isInteger(initial) || initial < 1) {
      throw new RendezvousError(`initialReplicas (WORLD_SIZE) must be a positive integer, got ${initial}`, {
        rank: replicaId,
        op,
      });
    }
    const timeoutMs = opts.timeoutMs ?? env.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const token = opts.token ?? env.token ?? "";
    const log = opts.log ?? (() => {});
    const method = parseInitMethod(opts.initMethod ?? "env://");
    const servesStore = replicaId === 0 &&
      (method.kind === "tcp" || (method.kind === "env" && env.storeExternal !== true));
    if (servesStore) {
      (opts.log ?? console.warn)(
        "replica 0 serves the job's store here: if it dies, the others cannot go on. Run under " +
          "`deno task launch --restart-failed N` (the launcher serves the store) to survive any loss",
      );
    }
    const rdzv = await createStore(opts.initMethod ?? "env://", {
      rank: replicaId,
      worldSize: Math.max(initial, replicaId + 1),
      token,
      timeoutMs,
      env,
    });
    let group: ReplicaGroup | undefined;
    try {
      const addr = await listenAddress(env);
      const job: JobContext = {
        store: new PrefixStore("ft/", rdzv.store),
        token,
        transport: opts.transport ?? env.transport,
        bind: addr.bind,
        advertise: addr.advertise,
        hostIdOverride: env.hostId,
        jobId: env.jobId,
        flightRecorder: recorderCapacity(env.flightRecorder),
        checksum: env.checksum,
        algorithm: forcedAlgorithm(env.algorithm),
        deterministic: env.deterministic ?? false,
      };
      const hbMs = (opts.heartbeat === false ? 0 : opts.heartbeat?.intervalMs) ?? env.heartbeatMs ??
        HEARTBEAT_DEFAULTS.intervalMs;
      const hbTimeout = (opts.heartbeat ? opts.heartbeat.timeoutMs : undefined) ?? env.heartbeatTimeoutMs ??
        HEARTBEAT_DEFAULTS.timeoutMs;
      const heartbeat = hbMs > 0 ? { intervalMs: hbMs, timeoutMs: hbTimeout } : null;
      group = new ReplicaGroup(
        replicaId,
        rdzv,
        job,
        {
          minReplicas: opts.minReplicas ?? 1,
          timeoutMs,
          formTimeoutMs: opts.formTimeoutMs ?? 60_000,
          settleTimeoutMs: opts.settleTimeoutMs ?? hbTimeout + 2 * (hbMs || 1000),
        },
        heartbeat,
        log,
      );
      const store = job.store;
      group.#spareAhead();
      if (await store.check([DONE])) {
        group.#finishedAt = Number(dec.decode(await store.get(DONE)));
        return group;
      }
      let first: QuorumRecord | null = null;
      if (replicaId < initial && !(await store.check([recordKey(0)]))) {
        first = await formFirst(store, replicaId, initial, timeoutMs);
      }
      const target = first?.members.includes(replicaId) ? first : null;
      group.#founder = target !== null;
      // A founder holds the initial state (step 0), should quorum 0 fail to form; a newcomer holds nothing.
      await group.#settleInto(target ? { step: 0, synced: true } : { step: -1, synced: false }, target);
      return group;
    } catch (e) {
      // Closing the group closes the store connection too.
      if (group) await group.close().catch(() => {});
      else await rdzv.close();
      throw e;
    }
  }

  /** The current quorum; null once the group was closed, or when the job had finished before this replica was admitted. */
  get quorum(): Quorum | null {
    const cur = this.#current;
    if (!cur?.pg) return null;
    const { rec, pg } = cur;
    const rank = rec.members.indexOf(this.replicaId);
    return {
      id: rec.id,
      members: rec.members,
      rank,
      size: rec.members.length,
      newcomers: rec.newcomers,
      source: rec.members.indexOf(rec.source),
      step: rec.step,
      isNewcomer: rec.newcomers.includes(this.replicaId),
      pg,
    };
  }

  /** Whether this replica founded the job (quorum 0): it starts with a training state of its own. */
  get founder(): boolean {
    return this.#founder;
  }

  /** The last step of the job, once a member finished it (`finish()`); null while it runs. */
  get finishedAt(): number | null {
    return this.#finishedAt;
  }

  /**
   * Ends step `step` of the current quorum: every member votes, `ok` when its step went through (its
   * collectives succeeded), in one small allreduce over the quorum's group (commit_vote.ts). `commit`
   * only when this member read the vote's result and every member voted ok on the same step; every
   * member that read it decided the same. Otherwise the step is not applied here and the quorum
   * re-forms: `known` is false when this member voted ok but the vote broke off (others may have
   * committed; if so, this member is behind them at the next quorum and receives their state).
   */
  async vote(step: number, ok: boolean): Promise<Decision> {
    const cur = this.#current;
    if (!cur?.pg) {
      throw new RendezvousError("vote() outside a quorum", { rank: this.replicaId, op: "ReplicaGroup.vote" });
    }
    const { rec, pg } = cur;
    // Group rank 0 looks for newcomers off the critical path; what it saw last goes with its vote.
    if (pg.rank === 0 && !cur.counting && performance.now() - cur.countedAt >= JOINER_POLL_MS) {
      cur.counting = true;
      cur.countedAt = performance.now();
      this.#store.add(JOINERS, 0).then((n) => cur.joiners = n, () => {}).finally(() => cur.counting = false);
    }
    const verdict = await commitVote({ pg, step, ok, grow: cur.joiners > rec.joinedTo });
    if (verdict === "unknown" || (verdict === "abort" && pg.failure)) {
      // This member's group broke (before or during the vote). The others must not wait for it in a
      // vote or a collective: the cause goes round the heartbeat's ring and breaks their groups, so
      // that all re-form; unless the heartbeat brought it, or it is a lost peer (the heartbeat finds
      // that one itself, as for the world group).
      const cause = pg.failure ??
        new AbortedError(`the commit vote of step ${step} failed`, {
          rank: pg.rank,
          op: "ReplicaGroup.vote",
        });
      if (!pg.failure) await pg.abort(cause).catch(() => {});
      if (!cur.news && !(cause instanceof PeerLostError)) await cur.heartbeat?.tell(cause);
    }
    // The next quorum's heartbeat thread, spawned now that this quorum has committed (not while re-forming).
    if (verdict === "commit" || verdict === "grow") this.#spareAhead();
    return {
      commit: verdict === "commit" || verdict === "grow",
      reconfigure: verdict !== "commit",
      known: verdict !== "unknown",
    };
  }

  /**
   * Leaves the current quorum and enters the next, in place: announces this replica (`state`: its
   * committed steps, and whether it holds their state), waits until each member of the last quorum
   * has announced itself or is known lost (reported by the heartbeat, restarted under the same id, or
   * silent past `settleTimeoutMs`), agrees on the members (plus the newcomers waiting), and opens
   * their group. A replica left out (taken for lost) registers as a newcomer and waits to be admitted.
   * Resolves with the new quorum, or null when the job finished while this replica waited.
   */
  async reconfigure(state: Announcement): Promise<Quorum | null> {
    await this.#settleInto(state, null);
    return this.quorum;
  }

  /**
   * Marks the job finished at `step` (newcomers still waiting then return from `join()` with
   * `finishedAt` set), leaves the quorum's group and closes the store connection. Every member calls it
   * after the last step.
   */
  async finish(step: number): Promise<void> {
    if (this.#closed) return;
    await this.#store.compareSet(DONE, "", String(step)).catch(() => {});
    this.#finishedAt = step;
    await this.close();
  }

  /** Leaves the quorum's group (stops its heartbeat with a goodbye) and closes the store connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#current) await this.#leave(this.#current);
    this.#current = null;
    await this.#spare?.discard();
    this.#spare = undefined;
    await this.#rdzv.close();
  }

  /** Re-forms until this replica is in an open quorum (or the job finished while it waited). */
  async #settleInto(state: Announcement, target: QuorumRecord | null): Promise<void> {
    let announced = state;
    let prevJoinedTo = target?.joinedTo ?? 0;
    for (;;) {
      if (target === null && this.#current !== null) {
        const cur = this.#current;
        const next = cur.rec.id + 1;
        await announce(this.#store, next, this.replicaId, announced);
        const rec = await this.#agree(cur, next);
        await this.#leave(cur);
        this.#current = null;
        prevJoinedTo = cur.rec.joinedTo;
        if (rec.members.includes(this.replicaId)) target = rec;
        else {
          this.#log(
            `replica ${this.replicaId} was left out of quorum ${rec.id}; joining again as a newcomer`,
          );
          announced = { step: announced.step, synced: false };
        }
      }
      if (target === null) {
        target = await this.#admission();
        if (target === null) return;
        prevJoinedTo = target.joinedTo;
      }
      try {
        await this.#enter(target, prevJoinedTo);
        return;
      } catch (e) {
        if (!(e instanceof ChoirErrorClass)) throw e;
        this.#log(`quorum ${target.id} did not form (${e.message}); re-forming`);
        target = null; // #current is the quorum that failed: its members re-form from it
        if (this.#current?.rec.newcomers.includes(this.replicaId)) {
          announced = { ...announced, synced: false };
        }
      }
    }
  }

  /** Waits until every member of `cur` announced itself for `next` or is gone; the agreed record. */
  async #agree(cur: Current, next: number): Promise<QuorumRecord> {
    const store = this.#store;
    const prev = cur.rec.members;
    const start = performance.now();
    const op = "ReplicaGroup.reconfigure";
    for (;;) {
      if (await store.check([recordKey(next)])) return await readRecord(store, next);
      const here = await announcements(store, next, prev);
      const joiners = await pendingJoiners(store, cur.rec.joinedTo);
      const restarted = new Set(joiners.map((j) => j.replica).filter((r) => r >= 0));
      const late = performance.now() - start >= this.#o.settleTimeoutMs;
      const missing = prev.filter((r) => !here.has(r) && !cur.lost.has(r) && !restarted.has(r) && !late);
      if (missing.length === 0) {
        const joinedTo = joiners.length ? joiners[joiners.length - 1].slot : cur.rec.joinedTo;
        const rec = nextRecord(next, here, joiners, joinedTo);
        if (typeof rec === "string") throw new RendezvousError(rec, { rank: this.replicaId, op });
        if (rec.members.length >= this.#o.minReplicas) {
          const won = await proposeRecord(store, rec);
          if (won === rec || JSON.stringify(won) === JSON.stringify(rec)) {
            const lost = prev.filter((r) => !here.has(r));
            this.#log(
              `quorum ${next}: members ${rec.members.join(", ")}` +
                (lost.length ? `; lost ${lost.join(", ")}` : "") +
                (rec.newcomers.length ? `; newcomers ${rec.newcomers.join(", ")}` : ""),
            );
          }
          return won;
        }
        if (performance.now() - start > this.#o.formTimeoutMs) {
          throw new RendezvousError(
            `only ${rec.members.length} replica(s) alive (${
              rec.members.join(", ")
            }), fewer than minReplicas ` +
              `${this.#o.minReplicas}, and no newcomer came within ${this.#o.formTimeoutMs} ms`,
            { rank: this.replicaId, op },
          );
        }
        // Too few: wait for the next newcomer (or another member's record).
        const slot = (await store.add(JOINERS, 0)) + 1;
        await store.wait([joinerKey(slot)], 200).catch((e) => {
          if (!(e instanceof StoreTimeoutError)) throw e;
        });
        continue;
      }
      await Promise.race([sleep(20), cur.broken]);
    }
  }

  /** Registers as a newcomer and waits for a quorum to admit it; null when the job finished first. */
  async #admission(): Promise<QuorumRecord | null> {
    const store = this.#store;
    const op = "ReplicaGroup.join";
    const slot = await registerJoiner(store, this.replicaId);
    this.#log(`replica ${this.replicaId} waits to be admitted (newcomer slot ${slot})`);
    const start = performance.now();
    for (;;) {
      try {
        await store.wait([admitKey(slot)], 500);
        break;
      } catch (e) {
        if (!(e instanceof StoreTimeoutError)) throw e;
      }
      if (await store.check([DONE])) {
        this.#finishedAt = Number(dec.decode(await store.get(DONE)));
        return null;
      }
      if (performance.now() - start > this.#o.timeoutMs) {
        throw new RendezvousError(
          `no quorum admitted replica ${this.replicaId} within ${this.#o.timeoutMs} ms`,
          {
            rank: this.replicaId,
            op,
          },
        );
      }
    }
    const id = Number(dec.decode(await store.get(admitKey(slot))));
    if (id < 0) {
      throw new RendezvousError(
        `replica ${this.replicaId} was refused: its id is held by a live member of the job (a newcomer needs ` +
          `an id of its own), or its registration came more than 2 s late`,
        { rank: this.replicaId, op },
      );
    }
    return await readRecord(store, id);
  }

  /** Enters quorum `rec`: admits its newcomers, starts its heartbeat and opens its group. */
  async #enter(rec: QuorumRecord, prevJoinedTo: number): Promise<void> {
    await admitJoiners(this.#store, prevJoinedTo, rec);
    let breakNow: () => void = () => {};
    const broken = new Promise<void>((r) => breakNow = r);
    const cur: Current = {
      rec,
      pg: null,
      lost: new Set(),
      broken,
      breakNow,
      joiners: rec.joinedTo,
      counting: false,
      countedAt: -Infinity,
    };
    this.#current = cur;
    const rank = rec.members.indexOf(this.replicaId);
    const size = rec.members.length;
    if (this.#heartbeat && size > 1) {
      const thread = this.#spare;
      this.#spare = undefined;
      cur.heartbeat = startHeartbeat({
        rank,
        size,
        token: this.#job.token,
        store: new PrefixStore(`q${rec.id}/heartbeat/`, this.#store),
        bind: this.#job.bind!,
        advertise: this.#job.advertise,
        ...this.#heartbeat,
        // A member that ends without a goodbye is lost: nothing it sent is needed after that.
        graceMs: FT_GRACE_MS,
        onNews: (err) => this.#onNews(cur, err),
      }, thread);
    }
    const opening = openGroup({
      job: this.#job,
      tag: `q${rec.id}`,
      ranks: rec.members,
      rank,
      timeoutMs: this.#o.timeoutMs,
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<"timeout">((r) =>
      timer = setTimeout(() => r("timeout"), this.#o.formTimeoutMs)
    );
    const formed = { done: false };
    const restarted = this.#restartedMember(rec, formed);
    const r = await Promise.race([opening, broken.then(() => "lost" as const), gaveUp, restarted]).finally(
      () => {
        formed.done = true;
        clearTimeout(timer);
      },
    );
    if (typeof r === "string") {
      // The open may still finish later; whatever it brings is dropped then.
      opening.then((pg) => pg.abort("quorum abandoned").then(() => pg.destroy())).catch(() => {});
      const why = r === "lost"
        ? cur.news?.message ?? "a member was lost"
        : r === "timeout"
        ? `not formed within ${this.#o.formTimeoutMs} ms`
        : r;
      throw new RendezvousError(`quorum ${rec.id}: ${why}`, { rank: this.replicaId, op: "ReplicaGroup" });
    }
    cur.pg = r;
    if (cur.news) void r.abort(cur.news).catch(() => {});
  }

  /**
   * While quorum `rec` forms: resolves when a member registers anew as a newcomer (it died and was
   * restarted, so the group can never form), looking every 200 ms until `formed.done`.
   */
  async #restartedMember(rec: QuorumRecord, formed: { done: boolean }): Promise<string> {
    let seen = rec.joinedTo;
    try {
      while (!formed.done) {
        await sleep(200);
        if (formed.done) break;
        const count = await this.#store.add(JOINERS, 0);
        for (; seen < count && !formed.done; seen++) {
          const key = joinerKey(seen + 1);
          // Counted, not yet written: look again next time (a get would hold a request open).
          if (!(await this.#store.check([key]))) break;
          const replica = (JSON.parse(dec.decode(await this.#store.get(key))) as { replica: number }).replica;
          if (replica !== this.replicaId && rec.members.includes(replica)) {
            return `replica ${replica} was restarted while the group formed`;
          }
        }
      }
    } catch {
      // The store failed: forming fails by itself then.
    }
    return await new Promise<string>(() => {}); // formed: never resolves
  }

  /** Spawns the next quorum's heartbeat thread in the background, unless one waits already. */
  #spareAhead(): void {
    if (this.#spare || !this.#heartbeat || this.#closed) return;
    setTimeout(() => {
      if (!this.#spare && !this.#closed) this.#spare = spawnHeartbeatThread();
    }, 0);
  }

  /** What the quorum's heartbeat reports: a member lost (or another's cause); the group breaks with it. */
  #onNews(cur: Current, err: ChoirError): void {
    if (err instanceof PeerLostError && err.peer !== undefined) {
      const lost = cur.rec.members[err.peer];
      if (lost !== undefined) cur.lost.add(lost);
    }
    cur.news ??= err;
    cur.breakNow();
    if (cur.pg && !cur.pg.failure) void cur.pg.abort(err).catch(() => {});
  }

  /** Stops the quorum's heartbeat (with a goodbye) and closes its group. */
  async #leave(cur: Current): Promise<void> {
    await cur.heartbeat?.stop();
    const pg = cur.pg;
    if (!pg) return;
    // destroy() waits for running collectives: none runs now, but never let a stuck one hold us.
    await Promise.race([pg.destroy().catch(() => {}), sleep(2000)]);
  }
}
