/**
 * @module
 * The store protocol of fault-tolerant replica groups, in one process over a MemoryStore: the commit
 * vote (every member reads the same decision: commit only when all voted ok, abort on a failure, a loss
 * or a timeout, grow when newcomers wait) and the next quorum's record (holders, newcomers, source).
 */

import assert from "node:assert/strict";
import { MemoryStore } from "../../transports/store/mod.ts";
import { commitVote, type VoteOptions } from "../../collectives/ft/commit_vote.ts";
import { nextRecord } from "../../collectives/ft/quorum_store.ts";

const never = new Promise<void>(() => {});
const vote = (store: MemoryStore, ok: boolean, extra: Partial<VoteOptions> = {}) =>
  commitVote({ store, quorum: 3, size: 3, step: 7, ok, grow: false, lost: never, timeoutMs: 5000, ...extra });

Deno.test("commit vote: commit when every member voted ok, the same on all", async () => {
  const store = new MemoryStore();
  assert.deepEqual(await Promise.all([vote(store, true), vote(store, true), vote(store, true)]), [
    "commit",
    "commit",
    "commit",
  ]);
  await store.close();
});

Deno.test("commit vote: one failed member aborts the step on every member, whenever it votes", async () => {
  for (const failedFirst of [true, false]) {
    const store = new MemoryStore();
    const oks = [vote(store, true), vote(store, true)];
    const failed = failedFirst
      ? vote(store, false)
      : new Promise((r) => setTimeout(r, 20)).then(() => vote(store, false));
    assert.deepEqual(await Promise.all([...oks, failed]), ["abort", "abort", "abort"]);
    await store.close();
  }
});

Deno.test("commit vote: a member reported lost before voting, or a timeout, aborts the step", async () => {
  const store = new MemoryStore();
  let lose: () => void = () => {};
  const lost = new Promise<void>((r) => lose = r);
  const waiting = [vote(store, true, { lost }), vote(store, true, { lost })];
  setTimeout(lose, 20);
  assert.deepEqual(await Promise.all(waiting), ["abort", "abort"]);
  const other = new MemoryStore();
  assert.equal(await vote(other, true, { timeoutMs: 30 }), "abort");
  await store.close();
  await other.close();
});

Deno.test("commit vote: one member that saw newcomers waiting turns the commit into grow", async () => {
  const store = new MemoryStore();
  assert.deepEqual(
    await Promise.all([vote(store, true), vote(store, true, { grow: true }), vote(store, true)]),
    [
      "grow",
      "grow",
      "grow",
    ],
  );
  await store.close();
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
