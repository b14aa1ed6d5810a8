/**
 * @module
 * Shared-memory transport tests beyond the conformance suite: nothing left in /dev/shm (after close, and
 * after a SIGKILL mid-transfer), token and mode checks, timeouts, the arena, and the missing-FFI error.
 */

import assert from "node:assert/strict";
import {
  AuthError,
  CollectiveTimeoutError,
  InvalidArgumentError,
  PeerLostError,
  TransportError,
} from "../../errors.ts";
import type { FrameHeader } from "../../transports/frame.ts";
import { ShmTransport, type ShmTransportOptions } from "../../transports/shm/transport.ts";
import { MemoryStore } from "../../transports/store/mod.ts";
import { jobTag } from "../../transports/shm/segment.ts";

const fixture = new URL("../fixtures/shm_rank.ts", import.meta.url).pathname;
const hdr = (chunk: number, bytes: number): FrameHeader => ({
  group: 0,
  seq: 7,
  op: 2,
  dtype: 0,
  count: 1,
  root: -1,
  chunk,
  bytes,
});
const fill = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 255);
const newJob = () => "t" + crypto.randomUUID().slice(0, 8);

/** Names in /dev/shm that belong to `jobId`. */
async function leftovers(jobId: string): Promise<string[]> {
  const prefix = `choir-${await jobTag(jobId)}`;
  return [...Deno.readDirSync("/dev/shm")].map((e) => e.name).filter((n) => n.startsWith(prefix));
}

/** Two ranks in this process, sharing a MemoryStore. */
async function pair(
  extra: Partial<ShmTransportOptions> = {},
): Promise<[ShmTransport, ShmTransport, MemoryStore]> {
  const store = new MemoryStore();
  const base = { size: 2, store, token: "tok", timeoutMs: 5000, ...extra };
  const [a, b] = await Promise.all([
    ShmTransport.create({ ...base, rank: 0 }),
    ShmTransport.create({ ...base, rank: 1 }),
  ]);
  return [a, b, store];
}

Deno.test("shm: frames many times larger than the ring, both ways at once, in order", async () => {
  const jobId = newJob();
  const [a, b, store] = await pair({ ringBytes: 4096, jobId, timeoutMs: 30_000 });
  const [ca, cb] = await Promise.all([a.channel(1), b.channel(0)]);
  const sizes = [0, 1, 63, 64, 65, 4000, 4096, 100_001];
  const ops: Promise<void>[] = [];
  const got = sizes.map((n) => [new Uint8Array(n), new Uint8Array(n)]);
  sizes.forEach((n, i) => {
    ops.push(ca.send(hdr(i, n), fill(n, i)), cb.send(hdr(i, n), fill(n, i + 100)));
    ops.push(cb.recv(hdr(i, n), got[i][1]), ca.recv(hdr(i, n), got[i][0]));
  });
  await Promise.all(ops);
  sizes.forEach((n, i) => {
    assert.deepEqual(got[i][1], fill(n, i), `a -> b, frame ${i}`);
    assert.deepEqual(got[i][0], fill(n, i + 100), `b -> a, frame ${i}`);
  });
  assert.deepEqual(await leftovers(jobId), [], "unlinked once both attached");
  await a.close();
  await b.close();
  await store.close();
});

Deno.test("shm: the segment is mode 0600 while it has a name, and unlinked once every rank attached", async () => {
  const jobId = newJob();
  const store = new MemoryStore();
  const base = { size: 2, store, token: "tok", timeoutMs: 5000, jobId };
  const a = await ShmTransport.create({ ...base, rank: 0 });
  const st = Deno.statSync(`/dev/shm${a.segmentName}`);
  assert.equal((st.mode ?? 0) & 0o777, 0o600);
  assert.deepEqual(await leftovers(jobId), [a.segmentName.slice(1)]);
  const b = await ShmTransport.create({ ...base, rank: 1 });
  assert.deepEqual(await leftovers(jobId), []);
  await a.close();
  await b.close();
  await store.close();
});

Deno.test("shm: a rank with another token is refused with AuthError; closing removes the name", async () => {
  const jobId = newJob();
  const store = new MemoryStore();
  const a = await ShmTransport.create({ rank: 0, size: 2, store, token: "right", timeoutMs: 600, jobId });
  await assert.rejects(
    ShmTransport.create({ rank: 1, size: 2, store, token: "wrong", timeoutMs: 600, jobId }),
    AuthError,
  );
  // The refused rank never arrived: rank 0 gets a typed error at its timeout, not a hang.
  await assert.rejects(a.channel(1), (e: unknown) => e instanceof TransportError && e.peer === 1);
  assert.equal((await leftovers(jobId)).length, 1);
  await a.close();
  assert.deepEqual(await leftovers(jobId), []);
  await store.close();
});

Deno.test("shm: close rejects pending work with TransportError; the peer's wait fails with PeerLostError", async () => {
  const [a, b, store] = await pair({ timeoutMs: 60_000 });
  const [ca, cb] = await Promise.all([a.channel(1), b.channel(0)]);
  const mine = ca.recv(hdr(0, 8), new Uint8Array(8));
  const theirs = cb.recv(hdr(0, 8), new Uint8Array(8));
  const t0 = performance.now();
  await a.close();
  await assert.rejects(mine, TransportError);
  await assert.rejects(theirs, (e: unknown) => e instanceof PeerLostError && e.peer === 0);
  // Noticed through the closed flag, long before the 60 s timeout (room left for a loaded machine).
  assert.ok(performance.now() - t0 < 10_000, "peer noticed promptly");
  await assert.rejects(cb.send(hdr(1, 0), new Uint8Array(0)), PeerLostError, "the channel stays failed");
  await b.close();
  await store.close();
});

Deno.test("shm: a receive with no progress for timeoutMs fails with CollectiveTimeoutError naming the peer", async () => {
  const [a, b, store] = await pair({ timeoutMs: 300 });
  const ca = await a.channel(1);
  await b.channel(0);
  await assert.rejects(
    ca.recv(hdr(0, 4), new Uint8Array(4)),
    (e: unknown) => e instanceof CollectiveTimeoutError && e.peer === 1,
  );
  await a.close();
  await b.close();
  await store.close();
});

Deno.test("shm: bad arguments are refused with typed errors", async () => {
  const store = new MemoryStore();
  await assert.rejects(
    ShmTransport.create({ rank: 0, size: 1, store, token: "t", timeoutMs: 100, ringBytes: 5000 }),
    InvalidArgumentError,
  );
  await assert.rejects(
    ShmTransport.create({ rank: 2, size: 2, store, token: "t", timeoutMs: 100 }),
    InvalidArgumentError,
  );
  const solo = await ShmTransport.create({ rank: 0, size: 1, store, token: "t", timeoutMs: 100 });
  await assert.rejects(solo.channel(0), TransportError);
  await solo.close();
  await store.close();
});

Deno.test("shm: the arena is the same memory in every rank, with doorbell naps and liveness", async () => {
  const [a, b, store] = await pair();
  const ha = a.arena()!;
  const hb = b.arena()!;
  assert.equal(ha.bytes, hb.bytes);
  // Default: two 1 MiB chunk buffers per rank (the collectives no longer keep an output buffer).
  assert.ok(ha.bytes >= 4 << 20, `arena of ${ha.bytes} bytes`);
  assert.equal(ha.offset % 64, 0);
  new Uint8Array(ha.buffer, ha.offset + ha.bytes - 8, 8).set([1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual([...new Uint8Array(hb.buffer, hb.offset + hb.bytes - 8, 8)], [1, 2, 3, 4, 5, 6, 7, 8]);
  const snap = hb.snapshot();
  ha.ring(1);
  let t0 = performance.now();
  hb.sleepSync(snap, 5000); // already rung: returns at once
  assert.ok(performance.now() - t0 < 1000);
  t0 = performance.now();
  hb.sleepSync(hb.snapshot(), 20); // nobody rings: the nap ends at its timeout
  assert.ok(performance.now() - t0 >= 15);
  assert.ok(hb.alive(0) && hb.alive(1));
  await a.close();
  assert.equal(hb.alive(0), false, "a closed rank is not alive");
  assert.equal(a.arena(), null);
  // A view kept past close reads zeros instead of crashing the process.
  assert.equal(new Uint8Array(ha.buffer, ha.offset + ha.bytes - 8, 8)[0], 0);
  await b.close();
  await store.close();
  const [c, d, store2] = await pair({ arenaBytes: 0 });
  assert.equal(c.arena(), null);
  await c.close();
  await d.close();
  await store2.close();
});

function runFixture(args: string[], perms = ["--allow-all"]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...perms, fixture, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
}

function resultLine(stdout: Uint8Array, stderr: Uint8Array): Record<string, unknown> {
  const text = new TextDecoder().decode(stdout);
  const line = text.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) throw new Error(`no RESULT:\n${text}\n${new TextDecoder().decode(stderr)}`);
  return JSON.parse(line.slice(7));
}

Deno.test("shm: create/close cycles between two processes leave nothing in /dev/shm", async () => {
  const jobId = newJob();
  const dir = await Deno.makeTempDir({ prefix: "choir-shm-" });
  try {
    const kids = [0, 1].map((r) => runFixture(["cycles", dir, String(r), "2", jobId]));
    const timer = setTimeout(() => kids.forEach((k) => k.kill("SIGKILL")), 60_000);
    const outs = await Promise.all(kids.map((k) => k.output()));
    clearTimeout(timer);
    for (const o of outs) {
      const r = resultLine(o.stdout, o.stderr);
      assert.deepEqual(r.failures, []);
      assert.equal(r.checks, 3);
    }
    assert.deepEqual(await leftovers(jobId), []);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

for (const victim of [0, 1]) {
  Deno.test(`shm: rank ${victim} SIGKILLed mid-transfer: the survivor gets PeerLostError, nothing is left`, async () => {
    const jobId = newJob();
    const dir = await Deno.makeTempDir({ prefix: "choir-shm-" });
    const kids = [0, 1].map((r) => runFixture(["stream", dir, String(r), "2", jobId, String(victim)]));
    const timer = setTimeout(() => kids.forEach((k) => k.kill("SIGKILL")), 60_000);
    try {
      await killAndCheck(kids, victim, jobId);
    } finally {
      clearTimeout(timer);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  });
}

Deno.test("shm: without --allow-ffi, create throws PermissionError naming the flag", async () => {
  const child = runFixture(["noffi", "-", "0", "1", "-"], ["--no-prompt"]);
  const o = await child.output();
  const r = resultLine(o.stdout, o.stderr);
  assert.equal(r.name, "PermissionError");
  assert.match(String(r.message), /--allow-ffi/);
});

/** Whether this machine lets an unprivileged process start a new user and PID namespace. */
const pidNamespaces = (() => {
  try {
    const args = ["-Urpf", "--kill-child", "--mount-proc", "true"];
    return new Deno.Command("unshare", { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
})();
if (!pidNamespaces) {
  console.log("shm_test: PID namespace cases ignored: `unshare -Urpf` is not available here");
}

for (const victim of [0, 1]) {
  Deno.test({
    name: `shm: rank 1 in its own PID namespace; rank ${victim} SIGKILLed: the other gets PeerLostError`,
    ignore: !pidNamespaces,
    fn: async () => {
      const jobId = newJob();
      const dir = await Deno.makeTempDir({ prefix: "choir-shm-" });
      const args = (r: number) => ["stream", dir, String(r), "2", jobId, String(victim)];
      // Rank 1 runs as pid 1 of a new PID namespace (its pid means nothing to rank 0, and rank 0's
      // pid does not exist for it); unshare --kill-child takes it down when unshare is killed.
      const kids = [
        runFixture(args(0)),
        new Deno.Command("unshare", {
          args: [
            "-Urpf",
            "--kill-child",
            "--mount-proc",
            Deno.execPath(),
            "run",
            "--allow-all",
            fixture,
            ...args(1),
          ],
          stdout: "piped",
          stderr: "piped",
          stdin: "null",
        }).spawn(),
      ];
      const timer = setTimeout(() => kids.forEach((k) => k.kill("SIGKILL")), 60_000);
      try {
        await killAndCheck(kids, victim, jobId);
      } finally {
        clearTimeout(timer);
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  });
}

/**
 * Kills `kids[victim]` once it says it is streaming, then checks that the survivor got PeerLostError
 * naming it from the liveness check (not the 20 s timeout; the bound leaves room for a loaded machine)
 * and that no segment of the job is left.
 */
async function killAndCheck(kids: Deno.ChildProcess[], victim: number, jobId: string): Promise<void> {
  const v = kids[victim];
  const survivorOut = kids[1 - victim].output();
  const reader = v.stdout.getReader();
  let seen = "";
  while (!seen.includes("READY")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`victim ended before streaming: ${seen}`);
    seen += new TextDecoder().decode(value);
  }
  const t0 = performance.now();
  v.kill("SIGKILL");
  const o = await survivorOut;
  const elapsed = performance.now() - t0;
  reader.releaseLock();
  await v.stdout.cancel();
  await v.stderr.cancel();
  await v.status;
  const r = resultLine(o.stdout, o.stderr);
  assert.equal(r.name, "PeerLostError", String(r.message));
  assert.equal(r.peer, victim);
  assert.ok(elapsed < 10_000, `survivor took ${elapsed.toFixed(0)} ms`);
  assert.deepEqual(await leftovers(jobId), []);
}
