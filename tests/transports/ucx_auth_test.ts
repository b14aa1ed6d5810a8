/**
 * @module
 * UCX authentication with real UCP workers: ranks holding different tokens refuse each other with
 * AuthError before any frame; a stranger's worker that reaches a rank's address cannot get a frame
 * matched by guessing tags; hello tags carry sender ranks beyond 16 bits without colliding.
 * Skipped (with the reason) where libucp does not load.
 */

import assert from "node:assert/strict";
import { AuthError } from "../../errors.ts";
import { encodeHeader, type FrameHeader, HEADER_BYTES } from "../../transports/frame.ts";
import { MemoryStore } from "../../transports/store/mod.ts";
import { ucxAvailability } from "../../transports/ucx/lib.ts";
import { UcxTransport } from "../../transports/ucx/transport.ts";
import { UcxWorker } from "../../transports/ucx/worker.ts";
import { helloTag } from "../../transports/ucx/tags.ts";

const avail = ucxAvailability();
if (!avail.ok) console.log(`ucx auth tests: skipped, ${avail.reason}`);
const ignore = !avail.ok;

const hdr = (bytes: number): FrameHeader => ({
  group: 0,
  seq: 0,
  op: 1,
  dtype: 0,
  count: 0,
  root: -1,
  chunk: 0,
  bytes,
});

Deno.test(
  "ucx: ranks with different tokens refuse each other with AuthError, within the timeout",
  { ignore },
  async () => {
    const store = new MemoryStore();
    const o = { size: 2, store, timeoutMs: 5000 };
    const [a, b] = await Promise.all([
      UcxTransport.create({ ...o, rank: 0, token: "token-a" }),
      UcxTransport.create({ ...o, rank: 1, token: "token-b" }),
    ]);
    try {
      const t0 = performance.now();
      const [ra, rb] = await Promise.allSettled([a.channel(1), b.channel(0)]);
      for (const r of [ra, rb]) {
        assert.equal(r.status, "rejected");
        assert.ok(r.reason instanceof AuthError, String(r.reason));
        assert.doesNotMatch(String(r.reason), /token-[ab]/);
      }
      assert.ok(performance.now() - t0 < 4500, "the refusal waited for the timeout");
    } finally {
      await Promise.all([a.close(), b.close()]);
      await store.close();
    }
  },
);

Deno.test(
  "ucx: a stranger's worker at a rank's address gets no frame matched by guessing tags",
  { ignore },
  async () => {
    const store = new MemoryStore();
    const o = { size: 2, store, token: "ucx-job-token", timeoutMs: 10_000 };
    const [a, b] = await Promise.all([
      UcxTransport.create({ ...o, rank: 0 }),
      UcxTransport.create({ ...o, rank: 1 }),
    ]);
    // The stranger read rank 0's address (say, off a leaked store) and opened its own endpoint there.
    const stranger = UcxWorker.open(1, 1);
    try {
      const [ab, ba] = await Promise.all([a.channel(1), b.channel(0)]);
      stranger.connect(0, await store.get("addr/0"), false);
      const forged = new Uint8Array(HEADER_BYTES + 4);
      encodeHeader(hdr(4), new DataView(forged.buffer));
      forged.set([6, 6, 6, 6], HEADER_BYTES);
      // Every tag of rank 1's first frames under the layout of any choir version: sender in the top bits.
      const sends: bigint[] = [];
      for (const shift of [48n, 32n]) for (let seq = 0n; seq < 4n; seq++) sends.push((1n << shift) | seq);
      const started = sends.map((tag) => stranger.send(0, forged, tag));
      const until = performance.now() + 1000;
      while (performance.now() < until) {
        stranger.progress();
        await new Promise((r) => setTimeout(r, 5));
      }
      void started;
      const got = new Uint8Array(4);
      await Promise.all([ba.send(hdr(4), new Uint8Array([1, 2, 3, 4])), ab.recv(hdr(4), got)]);
      assert.deepEqual([...got], [1, 2, 3, 4]);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await stranger.destroy(new Set(), 500, () => {});
      await store.close();
    }
  },
);

Deno.test("ucx: hello tags carry sender ranks beyond 16 bits without colliding", () => {
  const ranks = [0, 1, 4464, 65535, 65536, 70000, 1 << 20, 0xffff_fffe];
  const tags = ranks.map((r) => helloTag(r, 0));
  assert.equal(new Set(tags).size, ranks.length);
  assert.notEqual(helloTag(70000, 0), helloTag(70000 - 65536, 0));
  assert.notEqual(helloTag(5, 0), helloTag(5, 1));
});
