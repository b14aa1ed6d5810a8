/**
 * @module
 * {@link FtManager}: fault-tolerant data-parallel training in torchft's shape. It keeps a
 * {@link ReplicaGroup} (a quorum per membership, a commit vote per step), a DistributedDataParallel
 * over the current quorum's group (rebuilt only when the membership changes), the optimizer, the
 * step counter and the sampler's position. `runStep()` runs one step all-or-nothing: the update is
 * applied on every member of the quorum or on none; a step a loss interrupted is redone by the
 * survivors, in place, from the same position in the epoch. Newcomers get the state from a live member
 * (state_transfer.ts).
 */

import {
  AbortedError,
  type ChoirError,
  CollectiveTimeoutError,
  GroupDestroyedError,
  InvalidArgumentError,
  PeerLostError,
  TransportError,
} from "../../errors.ts";
import {
  type ProcessGroup,
  type Quorum,
  ReplicaGroup,
  type ReplicaGroupOptions,
} from "../../collectives/mod.ts";
import { DistributedDataParallel, type DistributedDataParallelOptions } from "../distributed.ts";
import type { Model } from "../model.ts";
import type { DistributedSampler } from "../sampler.ts";
import { shareState, type StatefulOptimizer } from "./state_transfer.ts";

/** Options of {@link FtManager.create}. */
export interface FtManagerOptions<M extends Model> {
  /** The model (host tensors); every replica builds the same one. */
  model: M;
  /** The optimizer; `runStep` calls its `step` once per committed step. */
  optimizer: StatefulOptimizer;
  /**
   * The sampler whose indices feed the steps; the manager shards it per quorum (see
   * `DistributedSampler.reshard`). Without it, `indices` is empty and the data is the caller's.
   */
  sampler?: DistributedSampler;
  /** Samples per member per step (with a sampler). */
  batchSize?: number;
  /** Options of every DistributedDataParallel the manager builds (one per quorum). */
  ddp?: Omit<DistributedDataParallelOptions, "initSync">;
  /** How this replica joins the job (replica id, minimum replicas, timeouts, ...). */
  group?: ReplicaGroupOptions;
  /** Attempts at one step before its last error is thrown (default 20). */
  maxAttempts?: number;
}

/** What one attempt at a step gets. */
export interface StepContext<M extends Model> {
  /** DDP over the current quorum; its gradients are zero at the start of the attempt. */
  readonly ddp: DistributedDataParallel<M>;
  /** The current quorum's group. */
  readonly pg: ProcessGroup;
  /** The current quorum. */
  readonly quorum: Quorum;
  /** The number of the step (committed steps before it). */
  readonly step: number;
  /** The epoch the step's samples come from. */
  readonly epoch: number;
  /** This member's sample indices for the step (empty without a sampler). */
  readonly indices: readonly number[];
}

/** The outcome of {@link FtManager.runStep}. */
export interface StepReport {
  /** The committed step's number; with `finished`, the job's last step. */
  readonly step: number;
  /** True when the job had finished without this replica (nothing was run). */
  readonly finished: boolean;
  /** Attempts it took (more than 1 when members were lost meanwhile). */
  readonly attempts: number;
  /** The quorum that committed it. */
  readonly quorum: number;
  /** Its members (replica ids, in group-rank order). */
  readonly members: readonly number[];
  /** This replica's group rank in it. */
  readonly rank: number;
  /** The epoch of its samples. */
  readonly epoch: number;
  /** Position in the epoch's order of the step's first sample (its samples are positions `[consumed, consumed + size * batchSize)`). */
  readonly consumed: number;
  /** This member's sample indices. */
  readonly indices: readonly number[];
}

/** Errors of a step that a re-formed quorum can redo: a member lost, the group aborted or timed out. */
function retryable(e: unknown): e is ChoirError {
  return e instanceof PeerLostError || e instanceof AbortedError || e instanceof CollectiveTimeoutError ||
    e instanceof TransportError || e instanceof GroupDestroyedError;
}

/**
 * Fault-tolerant data-parallel training: survivors of a lost replica go on in place, and replacements
 * join at a step boundary with the state of a live peer.
 *
 * @example
 * ```ts ignore
 * // deno task launch --nproc-per-node 4 --restart-failed 3 train.ts
 * const ft = await FtManager.create({ model, optimizer: new SGD({ lr: 0.05 }), sampler, batchSize: 32 });
 * while (ft.step < 1000) {
 *   await ft.runStep(async ({ ddp, indices }) => {
 *     const { grad } = softmaxCrossEntropy(model.forward(inputs(indices), indices.length), labels(indices), indices.length, 10);
 *     await model.backwardAsync(grad);
 *     await ddp.finishBackward(); // averaged over the quorum
 *   }); // committed on every member or none; the optimizer step is the manager's
 * }
 * await ft.close();
 * ```
 */
export class FtManager<M extends Model = Model> {
  /** The model. */
  readonly model: M;
  /** The replicas of the job. */
  readonly group: ReplicaGroup;
  readonly #opts: FtManagerOptions<M>;
  #ddp: DistributedDataParallel<M> | null = null;
  #step = 0;
  #epoch = 0;
  #consumed = 0;
  /** Whether this replica holds the state of its committed steps (a founder, or a newcomer once served). */
  #synced: boolean;
  #reform = false;
  #setup = true;
  #finished = false;
  #shard: { epoch: number; size: number; rank: number; from: number; indices: number[] } | null = null;

  private constructor(opts: FtManagerOptions<M>, group: ReplicaGroup) {
    this.model = opts.model;
    this.group = group;
    this.#opts = opts;
    this.#synced = group.founder;
    if (group.finishedAt !== null) this.#finish(group.finishedAt);
  }

  /**
   * Joins the job (see `ReplicaGroup.join`): a founder forms the first quorum with the others, a
   * replacement or newcomer waits for a step boundary to be admitted. The state is shared at the first
   * `runStep`.
   */
  static async create<M extends Model>(opts: FtManagerOptions<M>): Promise<FtManager<M>> {
    if (opts.sampler && !(Number.isInteger(opts.batchSize) && opts.batchSize! > 0)) {
      throw new InvalidArgumentError(`FtManager: batchSize must be a positive integer with a sampler`, {
        op: "FtManager.create",
      });
    }
    return new FtManager(opts, await ReplicaGroup.join(opts.group));
  }

  /** Committed steps so far (after `finished`: the job's last step). */
  get step(): number {
    return this.#step;
  }

  /** The epoch of the next step's samples. */
  get epoch(): number {
    return this.#epoch;
  }

  /** Samples of the current epoch used by committed steps. */
  get consumed(): number {
    return this.#consumed;
  }

  /** The current quorum (null before this replica was admitted, or after `close()`). */
  get quorum(): Quorum | null {
    return this.group.quorum;
  }

  /** DDP over the current quorum (null until the first step). */
  get ddp(): DistributedDataParallel<M> | null {
    return this.#ddp;
  }

  /** Whether the job finished without this replica (it joined too late, or was left out at the end). */
  get finished(): boolean {
    return this.#finished;
  }

  /**
   * Runs one step until a quorum commits it. Each attempt zeroes the gradients and calls `fn` (forward,
   * backward, `ddp.finishBackward()`); then the members vote (one small allreduce over the quorum's
   * group): on commit the optimizer steps on every member, else on none, and when a member was lost
   * the survivors re-form in place and try again with the new membership, from the same position in
   * the epoch. A member whose vote broke off applies nothing; if others committed the step, the next
   * quorum hands it their state (which holds the step) and the step counts as committed here too. Errors of `fn` other than a lost or failed
   * group are thrown (after voting the step down, so the others do not wait).
   */
  async runStep(fn: (ctx: StepContext<M>) => void | Promise<void>): Promise<StepReport> {
    const max = this.#opts.maxAttempts ?? 20;
    // An attempt this member voted ok on without learning the outcome (others may have committed it).
    let unsure: StepReport | null = null;
    for (let attempt = 1;; attempt++) {
      if (this.#finished) return this.#finishedReport(attempt - 1);
      if (this.#reform) {
        const q = await this.group.reconfigure({ step: this.#step, synced: this.#synced });
        this.#reform = false;
        this.#setup = true;
        if (!q) {
          this.#finish(this.group.finishedAt ?? this.#step);
          continue;
        }
        // A newcomer holds nothing until served; a founder's initial state stays valid before the first commit.
        if (q.isNewcomer && !(this.group.founder && this.#step === 0)) this.#synced = false;
      }
      let ok = true;
      let failure: ChoirError | null = null;
      let plan: { epoch: number; from: number; indices: number[] } | null = null;
      const quorum = this.group.quorum!;
      // The step every member votes on: this replica's own count once it holds the state.
      const voting = () => this.#synced ? this.#step : quorum.step;
      try {
        if (this.#setup) await this.#enterQuorum(quorum);
        // The others committed the step whose outcome this member missed: the state it was just handed
        // holds that step, which is then this member's too (logged as the others logged it).
        if (unsure && this.#step === unsure.step + 1) return unsure;
        unsure = null;
        plan = this.#plan(quorum);
        const ddp = this.#ddp!;
        ddp.zeroGrad();
        await fn({ ddp, pg: quorum.pg, quorum, step: this.#step, epoch: plan.epoch, indices: plan.indices });
      } catch (e) {
        if (!retryable(e)) {
          await this.group.vote(voting(), false).catch(() => {});
          throw e;
        }
        ok = false;
        failure = e;
      }
      const d = await this.group.vote(voting(), ok);
      if (d.reconfigure) this.#reform = true;
      if (plan && (d.commit || !d.known)) {
        const report: StepReport = {
          step: this.#step,
          finished: false,
          attempts: attempt,
          quorum: quorum.id,
          members: quorum.members,
          rank: quorum.rank,
          epoch: plan.epoch,
          consumed: plan.from,
          indices: plan.indices,
        };
        if (d.commit) {
          this.#opts.optimizer.step(this.model.parameters());
          this.#step++;
          this.#epoch = plan.epoch;
          this.#consumed = plan.from + quorum.size * (this.#opts.batchSize ?? 0);
          return report;
        }
        unsure = report;
      }
      if (attempt >= max) {
        throw failure ?? new AbortedError(`step ${this.#step} was aborted ${attempt} times`, {
          op: "FtManager.runStep",
        });
      }
    }
  }

  /** Marks the job finished (every member calls it after the last step) and leaves the group. */
  async close(): Promise<void> {
    this.#ddp?.detach();
    if (this.#finished) await this.group.close();
    else await this.group.finish(this.#step);
  }

  /** On a new quorum: the state from a live member when newcomers need it, and DDP over the new group. */
  async #enterQuorum(q: Quorum): Promise<void> {
    const { model, optimizer } = this.#opts;
    if (q.newcomers.length > 0) {
      const values = await shareState(
        q.pg,
        q.source,
        {
          params: model.parameters(),
          buffers: model.buffers?.() ?? [],
          optimizer,
          values: { step: this.#step, epoch: this.#epoch, consumed: this.#consumed },
        },
        this.#opts.ddp?.timeoutMs,
      );
      this.#step = values.step;
      this.#epoch = values.epoch;
      this.#consumed = values.consumed;
      this.#synced = true;
    }
    this.#ddp?.detach();
    this.#ddp = null;
    this.#ddp = await DistributedDataParallel.create(model, q.pg, { ...this.#opts.ddp, initSync: false });
    this.#shard = null;
    this.#setup = false;
  }

  /**
   * The step's samples: positions `[from, from + size * batchSize)` of the epoch's order, this member's
   * share of them; the next epoch starts when fewer than that are left (the tail is dropped).
   */
  #plan(q: Quorum): { epoch: number; from: number; indices: number[] } {
    const sampler = this.#opts.sampler;
    if (!sampler) return { epoch: this.#epoch, from: this.#consumed, indices: [] };
    const b = this.#opts.batchSize!;
    const need = q.size * b;
    if (sampler.datasetLength < need) {
      throw new InvalidArgumentError(
        `the dataset has ${sampler.datasetLength} samples, fewer than one step of ${q.size} x ${b}`,
        { op: "FtManager.runStep" },
      );
    }
    let epoch = this.#epoch, from = this.#consumed;
    if (sampler.datasetLength - from < need) {
      epoch++;
      from = 0;
    }
    let s = this.#shard;
    if (!s || s.epoch !== epoch || s.size !== q.size || s.rank !== q.rank || from < s.from) {
      sampler.setEpoch(epoch);
      sampler.reshard(q.size, q.rank, from);
      s = this.#shard = { epoch, size: q.size, rank: q.rank, from, indices: sampler.indices() };
    }
    const at = (from - s.from) / q.size;
    return { epoch, from, indices: s.indices.slice(at, at + b) };
  }

  #finish(step: number): void {
    this.#finished = true;
    this.#step = step;
  }

  #finishedReport(attempts: number): StepReport {
    return {
      step: this.#step,
      finished: true,
      attempts,
      quorum: -1,
      members: [],
      rank: -1,
      epoch: this.#epoch,
      consumed: this.#consumed,
      indices: [],
    };
  }
}
