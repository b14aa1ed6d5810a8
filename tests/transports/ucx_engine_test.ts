/**
 * @module
 * The UCX progress engine against a stand-in worker (no libucp needed): when a peer is given up on,
 * requests UCX already completed are delivered, not failed. A peer's error arrives inside
 * `ucp_worker_progress`, often in the same call that completed the receive of its last message.
 */

import assert from "node:assert/strict";
import { type Pending, UcxEngine } from "../../transports/ucx/engine.ts";
import { UCS_INPROGRESS, UCS_OK } from "../../transports/ucx/status.ts";
import type { UcxWorker } from "../../transports/ucx/worker.ts";

const LENGTH_AT = 8;

/** A worker whose requests finish when the test says so; records cancels and frees. */
function fakeWorker() {
  const status = new Map<Deno.PointerObject, number>();
  const cancelled: Deno.PointerObject[] = [];
  const freed: Deno.PointerObject[] = [];
  const ucp = {
    ucp_tag_recv_request_test: (r: Deno.PointerObject, info: Uint8Array) => {
      const st = status.get(r) ?? UCS_INPROGRESS;
      if (st !== UCS_INPROGRESS) new DataView(info.buffer).setBigUint64(LENGTH_AT, 4n, true);
      return st;
    },
    ucp_request_check_status: (r: Deno.PointerObject) => status.get(r) ?? UCS_INPROGRESS,
    ucp_request_cancel: (_w: unknown, r: Deno.PointerObject) => {
      cancelled.push(r);
      status.set(r, -16);
    },
    ucp_request_free: (r: Deno.PointerObject) => void freed.push(r),
  };
  const worker = {
    efd: -1,
    handle: Deno.UnsafePointer.create(1n),
    layout: { tagRecvInfo: { size: 16, length: LENGTH_AT } },
    lib: { ucp },
    progress: () => 0,
    arm: () => -1, // neither OK nor BUSY: the engine naps with a macrotask instead of polling an fd
    signal: () => {},
  } as unknown as UcxWorker;
  return { worker, status, cancelled, freed };
}

const requests = new Map<number, Deno.PointerObject>();
/** Request handle `n` (one object per handle: the stand-in tells requests apart by identity). */
function request(n: number): Deno.PointerObject {
  let r = requests.get(n);
  if (!r) requests.set(n, r = Deno.UnsafePointer.create(BigInt(0x1000 + n))!);
  return r;
}

Deno.test("ucx engine: abandoning a peer delivers the receives UCX already completed, fails the rest", async () => {
  const { worker, status, cancelled, freed } = fakeWorker();
  const engine = new UcxEngine(worker, () => {}, { spinUs: 0, yieldUs: 0, sleepMs: 1, checkMs: 1000 });
  const outcomes: string[] = [];
  const track = (n: number, peer: number) => {
    const p: Pending = {
      request: request(n),
      info: new Uint8Array(16),
      keep: new Uint8Array(4),
      peer,
      complete: (st, len) => outcomes.push(`${n}: complete ${st} ${len}`),
      abandon: (e) => outcomes.push(`${n}: abandon ${e.message}`),
    };
    engine.track(p);
  };
  track(1, 1); // the peer's last message: UCX completes it in the call that reports the peer's error
  track(2, 1); // a receive the peer never answered
  track(3, 2); // another peer's receive: untouched
  await new Promise((r) => setTimeout(r, 5)); // the engine turns with nothing done
  assert.equal(outcomes.length, 0);
  status.set(request(1), UCS_OK);
  engine.abandon(new Error("peer 1 lost"), 1);
  assert.deepEqual(outcomes, ["1: complete 0 4", "2: abandon peer 1 lost"]);
  assert.deepEqual(cancelled, [request(2)], "only the unfinished receive is cancelled");
  assert.ok(freed.includes(request(1)), "the completed request is freed");
  assert.equal(engine.size, 1, "peer 2's receive is still pending");
  status.set(request(3), UCS_OK);
  await engine.stop();
  const kept = engine.drain(new Error("closed"), 10);
  assert.deepEqual(kept, [], "every request finished, nothing held");
  assert.ok(outcomes.includes("3: complete 0 4"), "a request UCX finished is delivered even at close");
});
