/**
 * @module
 * Tests of hang reports: the analysis of simulated flight-recorder tails (a rank that skipped an
 * allreduce, a rank that runs another op, ranks that never answered, idle groups, rooted ops, p2p),
 * and the store protocol over a MemoryStore (request, publish, collect, idle ranks answering).
 */

import assert from "node:assert/strict";
import type { FlightEntry } from "../../collectives/diagnostics/flight_recorder.ts";
import { FlightRecorder } from "../../collectives/diagnostics/flight_recorder.ts";
import { analyzeHang, formatRanks } from "../../collectives/diagnostics/hang_report.ts";
import {
  answerHangRequests,
  collectReport,
  parseTail,
  publishTail,
  reportHang,
  requestReport,
} from "../../collectives/diagnostics/hang_protocol.ts";
import { MemoryStore } from "../../transports/store/memory_store.ts";
import { PrefixStore } from "../../transports/store/prefix_store.ts";
import { StoreError } from "../../errors.ts";

const T0 = 1_700_000_000_000_000; // us since the epoch

/** A tail of `done` allReduces #first..#last, then `extra` entries. */
function tail(first: number, last: number, ...extra: FlightEntry[]): FlightEntry[] {
  const out: FlightEntry[] = [];
  for (let seq = first; seq <= last; seq++) out.push(entry(seq, "done"));
  return out.concat(extra);
}

function entry(seq: number, state: FlightEntry["state"], over: Partial<FlightEntry> = {}): FlightEntry {
  const e: FlightEntry = {
    group: 0,
    seq,
    op: "allReduce",
    reduceOp: "sum",
    dtype: "f32",
    count: 1024,
    root: -1,
    bytes: 4096,
    state,
    startUs: T0 + seq * 1000,
  };
  if (state !== "running") e.endUs = e.startUs + 500;
  return { ...e, ...over };
}

/** Ranks 0, 2, 3 are stuck in allReduce #42; rank 1 skipped one allreduce and stopped after #41. */
function skippedTails(): FlightEntry[][] {
  return [0, 1, 2, 3].map((r) => r === 1 ? tail(20, 41) : tail(20, 41, entry(42, "running")));
}

Deno.test("analyzeHang: a rank that skipped one allreduce is named with the op it is missing", () => {
  const report = analyzeHang(skippedTails(), { nowUs: T0 + 42_000 + 300_000_000 });
  assert.ok(report.stall);
  assert.equal(report.stall.entry.op, "allReduce");
  assert.equal(report.stall.entry.seq, 42);
  assert.deepEqual(report.stall.ready, [0, 2, 3]);
  assert.deepEqual(report.stall.missing.map((m) => [m.rank, m.last?.seq, m.last?.state]), [[1, 41, "done"]]);
  assert.deepEqual(report.stall.mismatched, []);
  assert.deepEqual(report.noAnswer, []);
  assert.equal(report.stall.runningSeconds, 300);
  assert.equal(
    report.text.split("\n")[1],
    "allReduce #42 (f32 x 1024) stalled for 300.0 s: ready ranks 0, 2, 3; " +
      "missing ranks 1 (its last: allReduce #41 done)",
  );
  assert.match(report.text, /^choir hang report: group 0, 4 ranks/);
  assert.deepEqual(report.ranks[1], { rank: 1, answered: true, last: entry(41, "done") });
  assert.equal(report.ranks[0].running?.seq, 42);
});

Deno.test("analyzeHang: a rank that never answered is listed as such", () => {
  const tails: (FlightEntry[] | undefined)[] = skippedTails();
  tails[3] = undefined;
  const report = analyzeHang(tails, { nowUs: T0 });
  assert.deepEqual(report.noAnswer, [3]);
  assert.deepEqual(report.stall?.ready, [0, 2]);
  assert.deepEqual(report.stall?.missing.map((m) => m.rank), [1]);
  assert.equal(report.ranks[3].answered, false);
  assert.match(report.text, /allReduce #42 \(f32 x 1024\) stalled.*; no answer from ranks 3$/m);
  // Nobody but rank 0 answered, and rank 1 recorded nothing at all.
  const lonely = analyzeHang([[entry(7, "running")], [], undefined, undefined, undefined]);
  assert.deepEqual(lonely.noAnswer, [2, 3, 4]);
  assert.deepEqual(lonely.stall?.missing, [{ rank: 1 }]);
  assert.match(lonely.text, /missing ranks 1 \(its last: none recorded\); no answer from ranks 2-4/);
});

Deno.test("analyzeHang: a rank that runs another op under the stalled seq is a mismatch", () => {
  // Rank 1 skipped allReduce #42 and went on to the barrier that follows it, numbered #42 on it.
  const tails = skippedTails();
  tails[1].push(
    entry(42, "running", { op: "barrier", reduceOp: undefined, dtype: "u8", count: 0, bytes: 0 }),
  );
  const report = analyzeHang(tails, { nowUs: T0 });
  assert.equal(report.stall?.entry.op, "allReduce");
  assert.deepEqual(report.stall?.ready, [0, 2, 3]);
  assert.deepEqual(report.stall?.missing, []);
  assert.deepEqual(report.stall?.mismatched.map((m) => [m.rank, m.entry.op]), [[1, "barrier"]]);
  assert.match(
    report.text,
    /allReduce #42 \(f32 x 1024\) stalled.*mismatched ranks 1 \(runs barrier u8 x 0\)/,
  );
});

Deno.test("analyzeHang: ranks already past the stalled op count as ready; rooted ops show the root", () => {
  // Broadcast #9 from root 0: the root finished, rank 1 is still receiving, rank 2 is behind.
  const bc = (state: FlightEntry["state"]) =>
    entry(9, state, { op: "broadcast", reduceOp: undefined, root: 0 });
  const report = analyzeHang([
    tail(0, 8, bc("done"), entry(10, "running")),
    tail(0, 8, bc("running")),
    tail(0, 8),
  ], { nowUs: T0 });
  assert.equal(report.stall?.entry.seq, 9);
  assert.deepEqual(report.stall?.ready, [0, 1]);
  assert.deepEqual(report.stall?.missing.map((m) => m.rank), [2]);
  assert.match(report.text, /broadcast #9 \(f32 x 1024, root 0\) stalled/);
});

Deno.test("analyzeHang: no collective in flight, evicted entries and p2p ops", () => {
  const idle = analyzeHang([tail(0, 3), tail(0, 3), undefined]);
  assert.equal(idle.stall, undefined);
  assert.match(idle.text, /no collective in flight on the ranks that answered; no answer from ranks 2/);
  // A rank in a recv is named, and its p2p seq does not count as the stalled collective.
  const recv = entry(0, "running", { op: "recv", reduceOp: undefined, root: 5, count: 4 });
  const p2p = analyzeHang([tail(3, 5, recv), tail(3, 5, entry(6, "running"))], { nowUs: T0 });
  assert.equal(p2p.stall?.entry.seq, 6);
  assert.deepEqual(p2p.stall?.ready, [1]);
  assert.deepEqual(p2p.stall?.missing.map((m) => [m.rank, m.last?.seq]), [[0, 5]]);
  assert.match(p2p.text, /^rank 0 is in recv #0 \(f32 x 4, tag 5\)$/m);
  // A rank far ahead whose ring no longer holds the stalled seq is still ready.
  const ahead = analyzeHang([tail(50, 60), tail(40, 44, entry(45, "running"))], { nowUs: T0 });
  assert.deepEqual(ahead.stall?.ready, [0, 1]);
});

Deno.test("formatRanks: runs of three or more become ranges", () => {
  assert.equal(formatRanks([]), "");
  assert.equal(formatRanks([3, 0, 2]), "0, 2, 3");
  assert.equal(formatRanks([0, 1, 2, 3, 7, 9, 10, 11, 12]), "0-3, 7, 9-12");
});

/** `p`, or a rejection after `ms` (a ref'd timer, cleared once `p` settles). */
async function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A rank whose collective timed out: its recorder after allReduces #0..#last, with #last running. */
function recorderAt(last: number): FlightRecorder {
  const rec = new FlightRecorder({ capacity: 16 });
  const call = (seq: number) => ({ name: "allReduce", seq, dtype: "f32", count: 1024, root: -1, op: "sum" });
  for (let seq = 0; seq <= last; seq++) {
    const h = rec.begin(call(seq), 4096);
    if (seq < last) rec.end(h);
  }
  return rec;
}

Deno.test("reportHang: timed-out ranks and an idle answering rank make one report, printed once", async () => {
  const mem = new MemoryStore();
  const store = new PrefixStore("group0", mem);
  // Rank 1 skipped allReduce #5: it is idle after #4 and only answers through its poller.
  const idle = recorderAt(4);
  idle.end(4);
  const responder = answerHangRequests({ store, rank: 1, tail: () => idle.tail(), intervalMs: 10 });
  try {
    const reports = await Promise.all(
      [0, 2, 3].map((rank) =>
        reportHang({ store, rank, size: 4, seq: 5, tail: recorderAt(5).tail(), waitMs: 10_000 })
      ),
    );
    assert.equal(await within(responder.answered, 5000), 5);
    for (const r of reports) {
      assert.equal(r.round, 5);
      assert.deepEqual(r.stall?.ready, [0, 2, 3]);
      assert.deepEqual(r.stall?.missing.map((m) => [m.rank, m.last?.seq, m.last?.state]), [[1, 4, "done"]]);
      assert.deepEqual(r.noAnswer, []);
      assert.match(
        r.text,
        /allReduce #5 \(f32 x 1024\) stalled.*: ready ranks 0, 2, 3; missing ranks 1 \(its last: allReduce #4 done\)/,
      );
    }
    assert.deepEqual(reports.map((r) => r.reporter), [true, false, false]);
    assert.equal(new TextDecoder().decode(await mem.get("group0/hang/5/reporter")), "0");
  } finally {
    responder.stop();
    await mem.close();
  }
});

Deno.test("collectReport: a rank that never answers is reported after waitMs; a garbled tail counts as none", async () => {
  const store = new MemoryStore();
  try {
    await store.set("hang/5/tail/2", "{not json");
    const t0 = performance.now();
    const [r0, r1] = await Promise.all(
      [0, 1].map((rank) =>
        reportHang({ store, rank, size: 4, seq: 5, tail: recorderAt(5).tail(), waitMs: 300 })
      ),
    );
    const ms = performance.now() - t0;
    assert.ok(ms >= 290 && ms < 5000, `took ${ms} ms`);
    for (const r of [r0, r1]) {
      assert.deepEqual(r.noAnswer, [2, 3]);
      assert.deepEqual(r.stall?.ready, [0, 1]);
      assert.match(r.text, /no answer from ranks 2, 3/);
    }
    assert.deepEqual([r0.reporter, r1.reporter], [true, false]);
  } finally {
    await store.close();
  }
});

Deno.test("hang protocol: the first request fixes the round; the lowest collecting rank reports", async () => {
  const store = new MemoryStore();
  try {
    assert.equal(await requestReport(store, 7), 7);
    assert.equal(await requestReport(store, 9), 7);
    // Rank 0 only answers (idle), so rank 1, the lowest collecting rank, prints.
    const idle = recorderAt(6);
    idle.end(6);
    await publishTail(store, 0, 7, idle.tail(), false);
    await publishTail(store, 1, 7, recorderAt(7).tail());
    await publishTail(store, 2, 7, recorderAt(7).tail());
    const [a, b] = await Promise.all([
      collectReport(store, 1, 3, 7, 1000),
      collectReport(store, 2, 3, 7, 1000),
    ]);
    assert.deepEqual([a.reporter, b.reporter], [true, false]);
    assert.deepEqual(a.stall?.missing.map((m) => m.rank), [0]);
    // An answering publish never replaces a collecting one; a collecting one replaces anything.
    await publishTail(store, 1, 7, [], false);
    assert.equal(parseTail(await store.get("hang/7/tail/1"), 1)?.collecting, true);
    await publishTail(store, 0, 7, [], true);
    assert.deepEqual(parseTail(await store.get("hang/7/tail/0"), 0), {
      rank: 0,
      collecting: true,
      entries: [],
    });
  } finally {
    await store.close();
  }
});

Deno.test("parseTail: rejects what is not a tail of the expected rank", () => {
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  assert.equal(parseTail(new Uint8Array([0xff, 0x00]), 0), undefined);
  assert.equal(parseTail(enc(null), 0), undefined);
  assert.equal(parseTail(enc({ rank: 1, collecting: true, entries: [] }), 0), undefined);
  assert.equal(parseTail(enc({ rank: 0, collecting: "yes", entries: [] }), 0), undefined);
  assert.equal(parseTail(enc({ rank: 0, collecting: true, entries: [{ seq: 1 }] }), 0), undefined);
  const ok = { rank: 0, collecting: false, entries: [entry(1, "done")] };
  assert.deepEqual(parseTail(enc(ok), 0), ok);
});

Deno.test("answerHangRequests: stop() ends polling; a store error ends it too", async () => {
  const store = new MemoryStore();
  const stopped = answerHangRequests({ store, rank: 0, tail: () => [], intervalMs: 5 });
  stopped.stop();
  stopped.stop();
  let failed: (err: unknown) => void = () => {};
  const failure = new Promise<unknown>((resolve) => failed = resolve);
  const broken = answerHangRequests({ store, rank: 1, tail: () => [], intervalMs: 5, onError: failed });
  await store.close();
  // The poller's timer is unref'd; a ref'd deadline keeps this test's event loop alive meanwhile.
  assert.ok((await within(failure, 5000)) instanceof StoreError);
  broken.stop();
  assert.equal(await store.check([]).catch(() => "closed"), "closed");
});
