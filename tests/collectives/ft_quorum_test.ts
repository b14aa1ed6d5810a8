/**
 * @module
 * The protocol of fault-tolerant replica groups, in one process: the commit vote over a stand-in for the
 * quorum's group (every member that reads the result decides the same: commit only when all voted ok on
 * the same step, abort when one voted no, grow when newcomers wait; a member whose group broke before
 * it voted aborts, one whose vote broke off does not know) and the next quorum's record (holders,
 * newcomers, source), which hands a member that missed a commit the state of those that made it.
 */

import assert from "node:assert/strict";
import { commitVote, type VoteGroup, type VoteOptions } from "../../collectives/ft/commit_vote.ts";
import { nextRecord } from "../../collectives/ft/quorum_store.ts";

/**
 * `n` members of one group in this process: `allReduce` (MIN) completes once all have called it; a
 * member in `unread` never gets the result (its call rejects, as when the group broke during the vote);
 * `abort()` rejects every call still waiting.
 */
function quorum(n: number, unread: readonly number[] = []) {
  const calls: { rank: number; v: Int32Array; ok: () => void; fail: (e: Error) => void }[] = [];
  const abort = () => {
    for (const c of calls.splice(0)) c.fail(new Error("aborted"));
  };
  const members = Array.from({ length: n }, (_, rank): VoteGroup & { failure: Error | null } => ({
    failure: null,
    allReduce(v: Int32Array) {
      return new Promise<void>((ok, fail) => {
        calls.push({ rank, v, ok, fail });
        if (calls.length < n) return;
        const min = calls.reduce((m, c) => m.map((x, i) => Math.min(x, c.v[i])), Array.from(calls[0].v));
        for (const c of calls.splice(0)) {
          if (unread.includes(c.rank)) c.fail(new Error("the group broke"));
          else {
            c.v.set(min);
            c.ok();
          }
        }
      });
    },
  }));
  return { members, abort, waiting: () => calls.length };
}

const vote = (pg: VoteGroup, ok: boolean, extra: Partial<VoteOptions> = {}) =>
  commitVote({ pg, step: 7, ok, grow: false, ...extra });

Deno.test("commit vote: commit when every member voted ok, the same on all", async () => {
  const { members } = quorum(3);
  assert.deepEqual(await Promise.all(members.map((pg) => vote(pg, true))), ["commit", "commit", "commit"]);
});

Deno.test("commit vote: one member voting no, or on another step, aborts the step on every member", async () => {
  const q = quorum(3);
  assert.deepEqual(
    await Promise.all([vote(q.members[0], true), vote(q.members[1], false), vote(q.members[2], true)]),
    ["abort", "abort", "abort"],
  );
  const r = quorum(3);
  assert.deepEqual(
    await Promise.all([
      vote(r.members[0], true),
      vote(r.members[1], true, { step: 8 }),
      vote(r.members[2], true),
    ]),
    ["abort", "abort", "abort"],
  );
});

Deno.test("commit vote: one member that saw newcomers waiting turns the commit into grow", async () => {
  const { members } = quorum(3);
  assert.deepEqual(
    await Promise.all([
      vote(members[0], true),
      vote(members[1], true, { grow: true }),
      vote(members[2], true),
    ]),
    ["grow", "grow", "grow"],
  );
});

Deno.test("commit vote: a member whose group broke aborts; the others, once their group breaks, do not know", async () => {
  const q = quorum(3);
  q.members[2].failure = new Error("lost peer");
  const others = [vote(q.members[0], true), vote(q.members[1], true)];
  assert.equal(await vote(q.members[2], true), "abort");
  // The broken member never joined the vote: the others wait until their group breaks too.
  assert.equal(q.waiting(), 2);
  q.abort();
  assert.deepEqual(await Promise.all(others), ["unknown", "unknown"]);
  // A member that voted no knows the outcome even when the vote breaks off: nobody could commit.
  const r = quorum(2);
  const pending = vote(r.members[0], false);
  r.abort();
  assert.equal(await pending, "abort");
});

Deno.test("commit vote: a member that missed a commit is behind at the next quorum and gets the state", async () => {
  // The result reached members 0 and 2 but not 1 (the group broke while it went round).
  const { members } = quorum(3, [1]);
  assert.deepEqual(await Promise.all(members.map((pg) => vote(pg, true))), ["commit", "unknown", "commit"]);
  // Members 0 and 2 hold step 8; member 1 did not apply step 7 and holds 7: it receives the state.
  const here = new Map([
    [0, { step: 8, synced: true }],
    [1, { step: 7, synced: true }],
    [2, { step: 8, synced: true }],
  ]);
  assert.deepEqual(nextRecord(4, here, [], 0), {
    id: 4,
    members: [0, 1, 2],
    newcomers: [1],
    source: 0,
    step: 8,
    joinedTo: 0,
  });
});

Deno.test("next quorum: survivors and newcomers, the lowest holder sends the state", () => {
  const here = new Map([
    [3, { step: 12, synced: true }],
    [1, { step: 12, synced: true }],
    [5, { step: 4, synced: false }],
  ]);
  const rec = nextRecord(4, here, [{ slot: 2, replica: 0 }, { slot: 3, replica: 3 }], 3);
  assert.deepEqual(rec, {
    id: 4,
    members: [0, 1, 3, 5],
    newcomers: [0, 5],
    source: 1,
    step: 12,
    joinedTo: 3,
  });
  // Before the first commit every member but the source takes the source's initial state.
  const first = nextRecord(
    1,
    new Map([[0, { step: 0, synced: true }], [2, { step: 0, synced: true }]]),
    [],
    0,
  );
  assert.deepEqual(first, { id: 1, members: [0, 2], newcomers: [2], source: 0, step: 0, joinedTo: 0 });
  const none = nextRecord(5, new Map([[2, { step: 0, synced: false }]]), [{ slot: 4, replica: 7 }], 4);
  assert.match(none as string, /no live replica holds the training state/);
});
