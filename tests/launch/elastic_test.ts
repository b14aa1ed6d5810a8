/**
 * @module
 * The elastic launcher on one host: node rendezvous rounds over a MemoryStore (MIN..MAX, last call,
 * --node-rank order, late joiners, refusal beyond MAX while every member beats, join timeout), ElasticState commit/restore, and
 * real launcher processes: a failed worker restarted (`--max-restarts`) or reported with its root cause
 * and log tail, and a late node admitted while a fourth beyond MAX is refused.
 */

import assert from "node:assert/strict";
import { RendezvousError } from "../../errors.ts";
import { joinRound, type NodeInfo } from "../../launch/elastic/rendezvous.ts";
import { ElasticState } from "../../launch/mod.ts";
import { roundLogDir } from "../../launch/elastic/rank_logs.ts";
import { MemoryStore, TcpStore } from "../../transports/store/mod.ts";
import { freePort } from "../helpers/ranks.ts";
import { Agent } from "../helpers/launch_agent.ts";

const here = (path: string) => new URL(`../../${path}`, import.meta.url).pathname;

const node = (i: number, nodeRank?: number): NodeInfo => ({
  id: `n${i}`,
  addr: `10.0.0.${i}`,
  nproc: 2,
  nodeRank,
});
const join = (
  store: MemoryStore,
  me: NodeInfo,
  extra: { min?: number; max?: number; fromRound?: number } = {},
) =>
  joinRound({
    store,
    me,
    min: extra.min ?? 2,
    max: extra.max ?? 3,
    fromRound: extra.fromRound,
    lastCallMs: 150,
    joinTimeoutMs: 5000,
    pollMs: 10,
    runId: "t",
  });

Deno.test("rendezvous: MAX nodes close the round at once; one more is refused, clearly", async () => {
  const store = new MemoryStore();
  const got = await Promise.all([0, 1, 2].map((i) => join(store, node(i))));
  for (const g of got) assert.deepEqual(g.world, got[0].world);
  assert.equal(got[0].world.nodes.length, 3);
  assert.deepEqual(got.map((g) => g.groupRank).sort(), [0, 1, 2]);
  // The members' agents heartbeat (as their monitors do): every one is alive, so the round is full.
  const beat = setInterval(() => [0, 1, 2].forEach((g) => store.add(`r0/hb/${g}`, 1)), 10);
  await assert.rejects(
    join(store, node(3)),
    (e: unknown) =>
      e instanceof RendezvousError &&
      /\[rendezvous\] run "t" is full: round 0 already has 3 node\(s\) and --nnodes allows at most 3; node n3 \(10\.0\.0\.3\) is refused/
        .test(e.message),
  ).finally(() => clearInterval(beat));
  await store.close();
});

Deno.test("rendezvous: MIN nodes close after the last call; a late node gets a new round with everyone", async () => {
  const store = new MemoryStore();
  const first = await Promise.all([0, 1].map((i) => join(store, node(i))));
  assert.equal(first[0].world.nodes.length, 2);
  assert.equal(first[0].world.round, 0);
  const late = join(store, node(2));
  // The running nodes see someone waiting (the agent's monitor does this) and join the next round.
  const waiting = await (async () => {
    for (;;) {
      const n = await store.add("r0/waiting", 0);
      if (n > 0) return n;
      await store.wait(["r1/joined"], 5000);
    }
  })();
  assert.equal(waiting, 1);
  const again = await Promise.all([0, 1].map((i) => join(store, node(i), { fromRound: 1 })));
  const l = await late;
  assert.equal(l.world.round, 1);
  assert.equal(l.world.nodes.length, 3);
  for (const g of again) assert.deepEqual(g.world, l.world);
  await store.close();
});

Deno.test("rendezvous: --node-rank orders GROUP_RANK; too few nodes time out naming the count", async () => {
  const store = new MemoryStore();
  const got = await Promise.all([[0, 2], [1, 0], [2, 1]].map(([i, r]) => join(store, node(i, r))));
  assert.deepEqual(got.map((g) => g.groupRank), [2, 0, 1]);
  const lonely = new MemoryStore();
  await assert.rejects(
    joinRound({ store: lonely, me: node(0), min: 2, max: 2, lastCallMs: 0, joinTimeoutMs: 200, runId: "x" }),
    /only 1 of at least 2 node\(s\) joined round 0 within 200 ms/,
  );
  await store.close();
  await lonely.close();
});

Deno.test("ElasticState: rank 0 commits, every rank restores in place; misfits and no store are typed errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const w0 = new Float32Array([1, 2, 3]);
    const s0 = await ElasticState.open({ tensors: { w: w0 }, values: { step: 0 }, dir, rank: 0 });
    const w1 = new Float32Array(3);
    const s1 = await ElasticState.open({ tensors: { w: w1 }, values: { step: 0 }, dir, rank: 1 });
    assert.equal(await s1.restore(), false);
    s1.values.step = 99;
    await s1.commit(); // rank 1 writes nothing
    assert.equal(await s0.restore(), false);
    s0.values.step = 7;
    await s0.commit();
    w0.fill(-1); // after the commit: not seen
    assert.equal(await s1.restore(), true);
    assert.deepEqual([...w1], [1, 2, 3]);
    assert.equal(s1.values.step, 7);
    assert.equal(s1.serial, 1);
    const bad = await ElasticState.open({ tensors: { w: new Float64Array(3) }, values: {}, dir, rank: 1 });
    await assert.rejects(
      bad.restore(),
      /tensor "w" was committed as Float32Array\(3\), but is Float64Array\(3\) now/,
    );
    for (const s of [s0, s1, bad]) await s.close();
    await assert.rejects(
      ElasticState.open({ tensors: {}, values: {}, env: {} }),
      /ElasticState needs the launcher's store/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launch CLI: --max-restarts 1 restarts a failed group; without restarts the root cause is named with its log tail", async () => {
  const logDir = await Deno.makeTempDir();
  try {
    const ok = new Agent([
      "--nproc-per-node",
      "3",
      "--max-restarts",
      "1",
      here("tests/fixtures/elastic_fail_once.ts"),
    ]);
    assert.equal(await ok.done, 0, ok.text);
    assert.match(
      ok.text,
      /launch: rank 1 exited with code 7 \(first failure; node 0 at 127\.0\.0\.1, round 0\); restarting the workers \(restart 1 of 1\)/,
    );
    for (let r = 0; r < 3; r++) {
      assert.match(ok.text, new RegExp(`\\[rank ${r}\\] rank ${r} ran after restart 1`));
    }

    const bad = new Agent([
      "--nproc-per-node",
      "2",
      "--rdzv-id",
      "failjob",
      "--log-dir",
      logDir,
      here("tests/fixtures/elastic_fail_once.ts"),
    ]);
    assert.equal(await bad.done, 7, bad.text);
    assert.match(
      bad.text,
      /launch: job failed: rank 1 exited with code 7 \(first failure; node 0 at 127\.0\.0\.1, round 0\)/,
    );
    assert.match(
      bad.text,
      /last 2 line\(s\) of rank 1 \(full log: .*\/run-[0-9a-f]{16}\/round_0\/rank_1\.log\):\n\s+\| about to fail\n\s+\| the reason is on stderr/,
    );
    const log = await Deno.readTextFile(`${await roundLogDir(logDir, "failjob", 0)}/rank_1.log`);
    assert.equal(log, "about to fail\n[stderr] the reason is on stderr\n");
  } finally {
    await Deno.remove(logDir, { recursive: true });
  }
});

Deno.test("launch CLI, --nnodes 2:3 on loopback: a late third node is admitted; a fourth is refused", async () => {
  const port = freePort();
  const common = [
    "--nnodes",
    "2:3",
    "--nproc-per-node",
    "1",
    "--rdzv-endpoint",
    `127.0.0.1:${port}`,
    "--rdzv-id",
    "late",
    "--token",
    "tk",
    "--rdzv-conf",
    "last_call_timeout=0.3,join_timeout=30",
    "--monitor-interval",
    "0.05",
    "--grace-ms",
    "1000",
  ];
  const program = [here("tests/fixtures/elastic_member.ts"), "3"];
  const agents: Agent[] = [];
  try {
    agents.push(new Agent([...common, ...program]), new Agent([...common, ...program]));
    await Promise.all(agents.map((a) => a.waitFor(/\] world 2 rank \d restart 0/)));
    agents.push(new Agent([...common, ...program]));
    await Promise.all(agents.map((a) => a.waitFor(/\] world 3 rank \d restart 0/)));
    for (const a of agents.slice(0, 2)) {
      assert.match(a.text, /1 node\(s\) asked to join; starting a new round \(not counted as a restart\)/);
    }
    const refused = new Agent([...common, ...program]);
    assert.equal(await refused.done, 1, refused.text);
    assert.match(
      refused.text,
      /launch: \[rendezvous\] run "late" is full: round 1 already has 3 node\(s\) and --nnodes allows at most 3; node .* is refused/,
    );
    const store = new TcpStore({ host: "127.0.0.1", port, token: "tk", timeoutMs: 10_000 });
    await store.set("choir/late/release", "1");
    await store.close();
    const codes = await Promise.all(agents.map((a) => a.done));
    assert.deepEqual(codes, [0, 0, 0], agents.map((a) => a.text).join("\n----\n"));
    for (const a of agents) assert.match(a.text, /\] sum 3$/m);
  } finally {
    agents.forEach((a) => a.kill());
    await Promise.all(agents.map((a) => a.done));
  }
});

Deno.test("launch CLI, --nnodes 1:2 on loopback: a node that dies is noticed by its heartbeat; the job goes on without it", async () => {
  const port = freePort();
  const args = [
    "--nnodes",
    "1:2",
    "--nproc-per-node",
    "1",
    "--rdzv-endpoint",
    `127.0.0.1:${port}`,
    "--rdzv-id",
    "leave",
    "--token",
    "tk",
    "--rdzv-conf",
    "last_call_timeout=0.3,heartbeat_timeout=2",
    "--monitor-interval",
    "0.05",
    here("tests/fixtures/elastic_member.ts"),
    "1",
  ];
  const a = new Agent(args);
  await a.waitFor(/\] world 1 rank 0 restart 0/); // a runs alone (MIN 1) ...
  const b = new Agent(args);
  try {
    // ... until b joins late: a new round with both.
    await Promise.all([a, b].map((x) => x.waitFor(/\] world 2 rank \d restart 0 group \d pid \d+/)));
    const pid = Number(b.lines.findLast((l) => / world 2 /.test(l))!.match(/pid (\d+)/)![1]);
    b.kill(); // the agent dies without a word ...
    Deno.kill(pid, "SIGKILL"); // ... and so does its worker
    await a.waitFor(/node \d \(127\.0\.0\.1\) sent no heartbeat for \d+ ms; starting a new round/);
    await a.waitFor(/\] world 1 rank 0 restart 0/, 2);
    const store = new TcpStore({ host: "127.0.0.1", port, token: "tk", timeoutMs: 10_000 });
    await store.set("choir/leave/release", "1");
    await store.close();
    assert.equal(await a.done, 0, a.text);
    assert.match(a.text, /\] sum 1$/m);
  } finally {
    a.kill();
    b.kill();
    await Promise.all([a.done, b.done]);
  }
});

Deno.test("launch CLI: SIGTERM while waiting for MIN nodes ends the agent at once (143)", async () => {
  const port = freePort();
  const a = new Agent([
    "--nnodes",
    "2",
    "--rdzv-endpoint",
    `127.0.0.1:${port}`,
    "--rdzv-id",
    "alone",
    "--token",
    "tk",
    here("tests/fixtures/elastic_member.ts"),
    "2",
  ]);
  const store = new TcpStore({ host: "127.0.0.1", port, token: "tk", timeoutMs: 20_000 });
  try {
    await store.wait(["choir/alone/rdzv/r0/node/0"]); // it has joined round 0 and waits for a second node
    const t0 = performance.now();
    Deno.kill(a.pid, "SIGTERM");
    assert.equal(await a.done, 143, a.text);
    assert.ok(performance.now() - t0 < 5000);
  } finally {
    await store.close();
    a.kill();
    await a.done;
  }
});
