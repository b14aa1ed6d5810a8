/**
 * @module
 * What is left in /dev/shm and who removes it. The launcher's sweep removes exactly the names of its
 * job (not a job whose id starts with this one's, nor one equal in the first 32 characters), and
 * nothing for a job without an id. A job whose every rank was SIGKILLed outside the launcher leaves
 * names behind only until the next job starts on the host; a live job's segment is never swept.
 */

import assert from "node:assert/strict";
import { jobTag } from "../../transports/shm/segment.ts";
import { sweepJobSegments } from "../../transports/shm/sweep.ts";
import { ShmTransport } from "../../transports/shm/transport.ts";
import { MemoryStore } from "../../transports/store/mod.ts";
import { choirSegments } from "../helpers/shm_segments.ts";
import { freePort } from "../helpers/ranks.ts";

const haveShm = (() => {
  try {
    return Deno.statSync("/dev/shm").isDirectory;
  } catch {
    return false;
  }
})();
if (!haveShm) console.log("shm_sweep_test: ignored: no /dev/shm on this machine");

const leftover = new URL("../fixtures/shm_leftover.ts", import.meta.url).pathname;
const shmRank = new URL("../fixtures/shm_rank.ts", import.meta.url).pathname;
const newJob = () => "sweep" + crypto.randomUUID().slice(0, 8);
const present = (name: string) => choirSegments().includes(name.replace(/^\//, ""));

Deno.test({
  name: "shm sweep: removes the job's names only; an empty job id removes nothing",
  ignore: !haveShm,
  fn: async () => {
    const id = newJob();
    const mine = [`choir-${await jobTag(id)}a-g0`, `choir-${await jobTag(id)}sym-1-a0-r0`];
    const others = [`choir-${await jobTag(`${id}x`)}a-g0`, `choir-${await jobTag(`other${id}`)}a-g0`];
    for (const n of [...mine, ...others]) {
      Deno.writeFileSync(`/dev/shm/${n}`, new Uint8Array(1), { mode: 0o600 });
    }
    try {
      assert.equal(await sweepJobSegments(""), 0);
      assert.equal(await sweepJobSegments(id), mine.length);
      const left = new Set(choirSegments());
      for (const n of mine) assert.ok(!left.has(n), `${n} should be gone`);
      for (const n of others) assert.ok(left.has(n), `${n} should remain`);
      assert.equal(await sweepJobSegments(id), 0);
    } finally {
      for (const n of [...mine, ...others]) {
        try {
          Deno.removeSync(`/dev/shm/${n}`);
        } catch { /* swept */ }
      }
    }
  },
});

Deno.test({
  name: "shm sweep: job j1 leaves j1-x's segment, and ids equal in their first 32 characters are told apart",
  ignore: !haveShm,
  fn: async () => {
    const r = crypto.randomUUID().slice(0, 8);
    const ids = [`j1${r}`, `j1${r}-x`, `${"p".repeat(32)}${r}a`, `${"p".repeat(32)}${r}b`];
    const store = new MemoryStore();
    // Rank 0 of two: its segment keeps its name until rank 1 arrives, which never happens here.
    const ts = await Promise.all(
      ids.map((jobId, g) =>
        ShmTransport.create({ rank: 0, size: 2, store, token: "t", timeoutMs: 5000, jobId, group: g })
      ),
    );
    try {
      for (const t of ts) {
        assert.ok(present(t.segmentName), `${t.segmentName} exists`);
        assert.equal((Deno.statSync(`/dev/shm${t.segmentName}`).mode ?? 0) & 0o777, 0o600, "mode 0600");
      }
      assert.equal(await sweepJobSegments(ids[0]), 1, "exactly j1's segment");
      assert.ok(!present(ts[0].segmentName), "j1's segment is gone");
      assert.ok(present(ts[1].segmentName), "j1-x's segment remains");
      assert.equal(await sweepJobSegments(ids[2]), 1, "exactly the first long id's segment");
      assert.ok(!present(ts[2].segmentName));
      assert.ok(present(ts[3].segmentName), "the other long id's segment remains");
      assert.equal(await sweepJobSegments(ids[1]), 1);
      assert.equal(await sweepJobSegments(ids[3]), 1);
    } finally {
      for (const t of ts) await t.close();
      await store.close();
    }
  },
});

/** Starts `args` under Deno; resolves `ready` on its `READY` line. */
function spawn(args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let sawReady = false;
  let seen!: () => void;
  const readyOrEnd = new Promise<void>((r) => seen = r);
  const done = (async () => {
    let stdout = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      stdout += chunk;
      if (!sawReady && stdout.includes("READY\n")) {
        sawReady = true;
        seen();
      }
    }
    seen();
    return stdout + (await new Response(child.stderr).text());
  })();
  const ready = readyOrEnd.then(async () => {
    if (!sawReady) throw new Error(`${args.join(" ")} ended before READY:\n${await done}`);
  });
  ready.catch(() => {}); // awaited only for the processes that print READY
  return { child, ready, done };
}

/** Polls until `pred` holds, failing after `ms`. */
async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name:
    "shm sweep: after SIGKILL of every rank (no launcher) the job's segments are gone once another job starts",
  ignore: !haveShm,
  fn: async () => {
    const dead = newJob();
    const tag = `choir-${await jobTag(dead)}`;
    const deadNames = () => choirSegments().filter((n) => n.startsWith(tag));
    // A live segment, held by this process: no sweep may take it.
    const store = new MemoryStore();
    const live = await ShmTransport.create({
      rank: 0,
      size: 2,
      store,
      token: "t",
      timeoutMs: 60_000,
      jobId: newJob(),
    });
    const dir = await Deno.makeTempDir({ prefix: "choir-sweep-" });
    const port = freePort();
    const kids = [
      // Ranks 0 and 1 of 3 attach to their group's segment; rank 2 never comes.
      ...[0, 1].map((r) => spawn([leftover, "group", dir, String(r), "3", dead])),
      // A world of 3 over shm; ranks 0 and 1 wait in pg.alloc for rank 2's segment.
      ...[0, 1, 2].map((r) =>
        spawn([leftover, "alloc"], {
          RANK: String(r),
          WORLD_SIZE: "3",
          MASTER_ADDR: "127.0.0.1",
          MASTER_PORT: String(port),
          CHOIR_TOKEN: "sweep-test",
          CHOIR_TRANSPORT: "shm",
          CHOIR_JOB_ID: dead,
        })
      ),
    ];
    const guard = setTimeout(() => kids.forEach((k) => k.child.kill("SIGKILL")), 90_000);
    try {
      await Promise.all(kids.map((k) => k.ready));
      // The group segment (named until rank 2 attaches) and ranks 0 and 1's symmetric segments.
      const symmetric = (n: string) => /sym|\.s\d+-r\d+-/.test(n); // the names before and after issue 19
      await until(() => deadNames().filter(symmetric).length === 2, 30_000, "2 symmetric segments");
      assert.equal(deadNames().length, 3, `segments of the job: ${deadNames().join(", ")}`);
      for (const k of kids) k.child.kill("SIGKILL");
      for (const k of kids) await k.done;
      for (const k of kids) await k.child.status;
      assert.equal(deadNames().length, 3, "no rank was left to remove them");
      // Another job starts on this host.
      const next = newJob();
      const later = [0, 1].map((r) => spawn([shmRank, "cycles", dir + "-next", String(r), "2", next]));
      const outs = await Promise.all(later.map((k) => k.done));
      for (const o of outs) assert.match(o, /"failures":\[\]/, o);
      assert.deepEqual(deadNames(), [], "the killed job's segments were swept");
      assert.ok(present(live.segmentName), "the live segment was left alone");
    } finally {
      clearTimeout(guard);
      for (const k of kids) {
        try {
          k.child.kill("SIGKILL");
        } catch { /* exited */ }
      }
      await Promise.all(kids.map((k) => k.done));
      await live.close();
      await store.close();
      await sweepJobSegments(dead);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.remove(dir + "-next", { recursive: true }).catch(() => {});
    }
  },
});
