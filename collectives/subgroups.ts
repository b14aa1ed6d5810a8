/**
 * @module
 * The groups a group forms: newGroup and split (an agreement round, then the opener opens the new
 * group's own transport), and the two-rank pair groups point-to-point calls use. It keeps them as
 * children, so that abort() and destroy() reach them, and destroys one that opens too late.
 */

import { type ChoirError, GroupDestroyedError } from "../errors.ts";
import { OpKind } from "./comm.ts";
import { groupDigest, groupTag, splitMembers, splitTag } from "./groups.ts";
import type { NewGroupOptions, SubgroupSpec } from "./options.ts";
import type { ArgCheck } from "./validate.ts";

/** What a subgroup must offer its parent. */
export interface Child {
  /** Gives up at once. */
  abort(reason?: string | ChoirError): Promise<void>;
  /** Closes it. */
  destroy(): Promise<void>;
}

/** What the subgroups use of their parent group. */
export interface SubgroupsOptions<G extends Child, L> {
  /** This rank in the parent. */
  rank: number;
  /** The parent's unique name; the children's derive from it. */
  tag: string;
  /** Global rank of each rank of the parent. */
  globalOf: readonly number[];
  /** The parent's default timeout, ms. */
  timeoutMs: number;
  /** Opens a subgroup's transport (none: the parent cannot form subgroups). */
  opener?: (spec: SubgroupSpec) => Promise<G>;
  /** The parent's argument checks. */
  check: ArgCheck;
  /** Every rank's `mine`, in rank order, in the parent's call order. */
  exchange(name: string, kind: number, mine: Float64Array): Promise<Float64Array>;
  /** Whether the parent was destroyed. */
  destroyed(): boolean;
  /** What a point-to-point call uses of a pair group (its channels, the peer's rank in it). */
  link(pair: G, peer: number): Promise<L>;
}

/** The subgroups of one group (see the module doc). */
export class Subgroups<G extends Child, L> {
  readonly #o: SubgroupsOptions<G, L>;
  #count = 0;
  readonly #children = new Set<G>();
  readonly #opening = new Set<Promise<void>>();
  readonly #pairs = new Map<number, Promise<L>>();

  /** @param o what they use of their parent. */
  constructor(o: SubgroupsOptions<G, L>) {
    this.#o = o;
  }

  /** torch's `new_group` (see ProcessGroup.newGroup). */
  async newGroup(ranks: readonly number[], opts: NewGroupOptions): Promise<G | null> {
    const name = "newGroup";
    const { check, rank } = this.#o;
    const opener = this.#opener(name);
    if (!Array.isArray(ranks) || ranks.length === 0) {
      throw check.invalid(name, "expects a non-empty list of ranks");
    }
    for (const p of ranks) check.peer(name, p, "rank", true);
    const members = [...new Set(ranks)].sort((a, b) => a - b);
    if (members.length !== ranks.length) throw check.invalid(name, `ranks [${ranks}] lists a rank twice`);
    const index = this.#count++;
    const digests = await this.#o.exchange(name, OpKind.newGroup, new Float64Array([groupDigest(members)]));
    const differ = Array.from(digests.keys()).filter((p) => digests[p] !== digests[rank]);
    if (differ.length > 0) {
      throw check.invalid(
        name,
        `ranks ${differ.join(", ")} passed other members than this rank's [${members}]`,
      );
    }
    if (!members.includes(rank)) return null;
    return await this.#open(opener, groupTag(this.#o.tag, index), members, opts);
  }

  /** `MPI_Comm_split` (see ProcessGroup.split). */
  async split(color: number | null, key: number, opts: NewGroupOptions): Promise<G | null> {
    const name = "split";
    const { check } = this.#o;
    const opener = this.#opener(name);
    if (color !== null && (!Number.isInteger(color) || color < 0 || color > 0x7fffffff)) {
      throw check.invalid(name, `color must be a non-negative 32-bit integer or null, got ${color}`);
    }
    if (!Number.isSafeInteger(key)) throw check.invalid(name, `key must be an integer, got ${key}`);
    const index = this.#count++;
    const pairs = await this.#o.exchange(name, OpKind.split, new Float64Array([color ?? -1, key]));
    if (color === null) return null;
    return await this.#open(opener, splitTag(this.#o.tag, index, color), splitMembers(pairs, color), opts);
  }

  /**
   * The link of the two-rank group with `peer`, opened on first use, or null where the parent cannot
   * open subgroups (then point-to-point shares the parent's links).
   */
  pair(peer: number): Promise<L> | null {
    const { opener, rank, globalOf } = this.#o;
    if (!opener) return null;
    let pair = this.#pairs.get(peer);
    if (!pair) {
      const [a, b] = rank < peer ? [rank, peer] : [peer, rank];
      pair = this.#adopt(opener({
        tag: `${this.#o.tag}.p${a}-${b}`,
        ranks: [globalOf[a], globalOf[b]],
        rank: rank === a ? 0 : 1,
        timeoutMs: this.#o.timeoutMs,
      })).then((g) => this.#o.link(g, rank === a ? 1 : 0));
      this.#pairs.set(peer, pair);
    }
    return pair;
  }

  /** Aborts every child. */
  async abort(reason: string | ChoirError): Promise<void> {
    await Promise.all([...this.#children].map((g) => g.abort(reason).catch(() => {})));
  }

  /** Waits for the children being opened, then destroys every child. */
  async destroy(): Promise<void> {
    await Promise.all(this.#opening);
    await Promise.all([...this.#children].map((g) => g.destroy().catch(() => {})));
  }

  #opener(name: string): (spec: SubgroupSpec) => Promise<G> {
    const opener = this.#o.opener;
    if (!opener) {
      throw this.#o.check.invalid(
        name,
        "this group was built without a subgroup opener (use initProcessGroup)",
      );
    }
    return opener;
  }

  async #open(
    opener: (spec: SubgroupSpec) => Promise<G>,
    tag: string,
    members: readonly number[],
    opts: NewGroupOptions,
  ): Promise<G> {
    return await this.#adopt(opener({
      tag,
      ranks: members.map((m) => this.#o.globalOf[m]),
      rank: members.indexOf(this.#o.rank),
      timeoutMs: opts.timeoutMs ?? this.#o.timeoutMs,
    }));
  }

  /**
   * Makes a group being opened a child, so that destroy() waits for it and then destroys it; one that
   * opens after the parent was destroyed is destroyed at once.
   */
  async #adopt(opening: Promise<G>): Promise<G> {
    const settled = opening.then(() => {}, () => {});
    this.#opening.add(settled);
    try {
      const sub = await opening;
      if (this.#o.destroyed()) {
        await sub.destroy();
        throw new GroupDestroyedError("the process group was destroyed", {
          rank: this.#o.rank,
          op: "newGroup",
        });
      }
      this.#children.add(sub);
      return sub;
    } finally {
      this.#opening.delete(settled);
    }
  }
}
