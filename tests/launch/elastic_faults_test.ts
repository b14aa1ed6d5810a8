/**
 * @module
 * The elastic launcher under faults (issue 19, point 6): a stray or duplicate `add` on a round's
 * counter, a node restarting quickly into a full round (`--nnodes N`), a wall-clock step during the
 * join window, the last call and heartbeats, two launches without `--rdzv-id` on one endpoint, the
 * store lost under running agents, and ElasticState telling "nothing committed" from "store lost".
 */

import assert from "node:assert/strict";
import { StoreError } from "../../errors.ts";
import { runAgent } from "../../launch/elastic/agent.ts";
import { joinRound, type NodeInfo } from "../../launch/elastic/rendezvous.ts";
import { ElasticState } from "../../launch/mod.ts";
import { readEnv } from "../../config.ts";
import { MemoryStore, startStoreServer, TcpStore } from "../../transports/store/mod.ts";
import { freePort } from "../helpers/ranks.ts";
import { Agent, killPid } from "../helpers/launch_agent.ts";

const here = (path: string) => new URL(`../../${path}`, import.meta.url).pathname;

const node = (i: number): NodeInfo => ({ id: `n${i}`, addr: `10.0.0.${i}`, nproc: 1 });

/** Resolves once `f()` is true, polling every 10 ms; rejects after `ms` naming `what`. */
async function until(what: string, f: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await f())) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Runs `body` with Date.now() stepped `stepMs` ahead from `at()` on (a simulated NTP step). */
function wallClock(): { step(ms: number): void; restore(): void } {
  const real = Date.now;
  let offset = 0;
  Date.now = () => real() + offset;
  return {
    step: (ms) => void (offset += ms),
    restore: () => void (Date.now = real),
  };
}

Deno.test("rendezvous: a stray add on the round's counter, before or between joins, breaks nothing", async () => {
  const store = new MemoryStore();
  const opts = { min: 2, max: 2, lastCallMs: 0, joinTimeoutMs: 8000, pollMs: 10, runId: "stray" };
  await store.add("r0/joined", 1); // a stray add before any node's slot is written
  const got = await Promise.all([0, 1].map((i) => joinRound({ store, me: node(i), ...opts })));
  assert.equal(got[0].world.nodes.length, 2);
  assert.deepEqual(got[0].world, got[1].world);
  assert.deepEqual(got.map((g) => g.groupRank).sort(), [0, 1]);

  // A duplicate add between two joins of a 2:3 round: it closes with the two real nodes after the last call.
  const dup = new MemoryStore();
  const first = joinRound({ store: dup, me: node(0), ...opts, max: 3, lastCallMs: 200 });
  await dup.wait(["r0/node/0"], 5000);
  await dup.add("r0/joined", 1);
  const second = await joinRound({ store: dup, me: node(1), ...opts, max: 3, lastCallMs: 200 });
  assert.deepEqual((await first).world, second.world);
  assert.deepEqual(second.world.nodes.map((n) => n.id).sort(), ["n0", "n1"]);
  await store.close();
  await dup.close();
});

Deno.test("rendezvous: a 30 s wall-clock step ends neither the join window nor the last call", async () => {
  const clock = wallClock();
  const store = new MemoryStore();
  try {
    const opts = { min: 2, max: 3, lastCallMs: 800, joinTimeoutMs: 20_000, pollMs: 10, runId: "ntp" };
    const t0 = performance.now();
    const a = joinRound({ store, me: node(0), ...opts });
    await store.wait(["r0/node/0"], 5000);
    clock.step(30_000); // the join window (20 s) must not end: it is measured on a monotonic clock
    const b = joinRound({ store, me: node(1), ...opts });
    await store.wait(["r0/node/1"], 5000);
    clock.step(30_000); // nor may the last call (0.8 s) end before 0.8 s have passed
    const [ga, gb] = await Promise.all([a, b]);
    assert.equal(ga.world.nodes.length, 2);
    assert.deepEqual(ga.world, gb.world);
    assert.ok(performance.now() - t0 >= 750, `closed after ${performance.now() - t0} ms`);
  } finally {
    clock.restore();
    await store.close();
  }
});

Deno.test("elastic agent: a 30 s wall-clock step does not count as a silent node", async () => {
  const store = new MemoryStore();
  const logs: string[] = [];
  const stop = new AbortController();
  const clock = wallClock();
  // Node 1 beats every 500 ms, node 0 looks every 20 ms: node 0 reads the same count many times over.
  const agent = (i: number, monitorMs: number) =>
    runAgent({
      program: "sleep",
      args: ["60"],
      denoFlags: [],
      nprocPerNode: 1,
      minNodes: 2,
      maxNodes: 2,
      runId: "ntp",
      store,
      master: { addr: "127.0.0.1", port: 1 },
      workerPrefix: "w/",
      addr: `10.0.0.${i}`,
      token: "tk",
      baseEnv: {},
      maxRestarts: 0,
      monitorMs,
      lastCallMs: 0,
      joinTimeoutMs: 10_000,
      heartbeatTimeoutMs: 30_000,
      graceMs: 1000,
      log: (m) => logs.push(`${i}: ${m}`),
      signal: stop.signal,
      stopSignal: () => "SIGTERM",
    });
  let runs: ReturnType<typeof agent>[] = [];
  try {
    runs = [agent(0, 20), agent(1, 500)];
    const beats = () => Promise.all([0, 1].map((g) => store.add(`r0/hb/${g}`, 0)));
    await until("both nodes to heartbeat", async () => (await beats()).every((n) => n >= 3));
    const first = await beats();
    const slow = first[0] < first[1] ? 0 : 1;
    // Step the wall clock while the slow node's count stands still and the fast one has seen it so.
    let mark: number[] = [];
    await until("a steady count of the slow node", async () => {
      const b = await beats();
      if (mark.length === 0 || b[slow] !== mark[slow]) mark = b;
      else if (b[1 - slow] >= mark[1 - slow] + 2) return true;
      return false;
    });
    clock.step(31_000);
    const after = await beats();
    await until("3 more heartbeats of each node", async () => {
      assert.ok(!logs.some((m) => /heartbeat/.test(m)), logs.join("\n"));
      return (await beats()).every((n, g) => n >= after[g] + 3);
    });
    stop.abort();
    const results = await Promise.all(runs);
    assert.ok(!logs.some((m) => /heartbeat/.test(m)), logs.join("\n"));
    assert.deepEqual(results.map((r) => [r.rounds, r.code]), [[1, 143], [1, 143]], logs.join("\n"));
  } finally {
    clock.restore();
    stop.abort();
    await Promise.allSettled(runs);
    await store.close();
  }
});

const sleeper = ["sh", "-c", "echo pid $$; exec sleep 120"];

Deno.test("launch CLI, --nnodes 2: a node restarting at once joins the next round; the store host gone is a StoreError", async () => {
  const port = freePort();
  const common = [
    "--nnodes",
    "2",
    "--nproc-per-node",
    "1",
    "--rdzv-endpoint",
    `127.0.0.1:${port}`,
    "--rdzv-id",
    "quick",
    "--token",
    "tk",
    "--rdzv-conf",
    "last_call_timeout=0,join_timeout=30,heartbeat_timeout=2",
    "--monitor-interval",
    "0.05",
    "--grace-ms",
    "1000",
  ];
  const agents: Agent[] = [];
  const pids: number[] = [];
  const store = new TcpStore({ host: "127.0.0.1", port, token: "tk", timeoutMs: 20_000 });
  try {
    const a = new Agent([...common, ...sleeper]);
    agents.push(a);
    await store.wait(["choir/quick/rdzv/r0/node/0"]); // a serves the store
    const b = new Agent([...common, ...sleeper]);
    agents.push(b);
    await Promise.all([a, b].map((x) => x.waitFor(/round 0: 2 node\(s\)/)));
    await Promise.all([a, b].map((x) => x.waitFor(/\] pid \d+/)));
    pids.push(a.lastNumber(/\] pid (\d+)/), b.lastNumber(/\] pid (\d+)/));
    b.kill(); // b's agent dies without a word, and its worker with it ...
    killPid(pids[1]);
    const b2 = new Agent([...common, ...sleeper]); // ... and is restarted at once
    agents.push(b2);
    await Promise.all([a, b2].map((x) => x.waitFor(/round 1: 2 node\(s\)/)));
    await b2.waitFor(/\] pid \d+/);
    pids.push(b2.lastNumber(/\] pid (\d+)/));
    assert.doesNotMatch(b2.text, /is refused/);

    // Now the node serving the store dies: the other agent ends with a StoreError, in bounded time.
    a.kill();
    killPid(a.lastNumber(/\] pid (\d+)/));
    const code = await b2.exitWithin(15_000);
    assert.equal(code, 1, b2.text);
    assert.match(b2.text, /launch: .*(cannot reach the store|store .* (lost|replaced|gone))/);
  } finally {
    await store.close();
    agents.forEach((x) => x.kill());
    pids.forEach(killPid);
    await Promise.all(agents.map((x) => x.done));
  }
});

Deno.test("launch CLI: two launches without --rdzv-id on one endpoint get their own run ids; nodes of one launch share it", async () => {
  const server = await startStoreServer({ hostname: "127.0.0.1", port: 0, token: "tk" });
  const args = (nnodes: string) => [
    "--nnodes",
    nnodes,
    "--nproc-per-node",
    "1",
    "--rdzv-endpoint",
    `127.0.0.1:${server.port}`,
    "--token",
    "tk",
    "--rdzv-conf",
    "last_call_timeout=0,join_timeout=30,heartbeat_timeout=2",
    "--monitor-interval",
    "0.05",
    here("tests/fixtures/elastic_commit.ts"),
  ];
  const agents: Agent[] = [];
  try {
    const first = [new Agent(args("2")), new Agent(args("2"))];
    agents.push(...first);
    assert.deepEqual(
      await Promise.all(first.map((x) => x.done)),
      [0, 0],
      first.map((x) => x.text).join("\n--\n"),
    );
    const runOf = (x: Agent) =>
      x.lines.find((l) => / run \S+ world /.test(l))?.match(/ run (\S+) world (\d+)/);
    const [r0, r1] = first.map(runOf);
    assert.ok(r0 && r1, first.map((x) => x.text).join("\n--\n"));
    assert.equal(r0[1], r1[1]); // one launch, one run id ...
    assert.deepEqual([r0[2], r1[2]], ["2", "2"]); // ... and one world
    assert.notEqual(r0[1], "none");
    const second = new Agent(args("1"));
    agents.push(second);
    assert.equal(await second.done, 0, second.text);
    const r2 = runOf(second);
    assert.ok(r2, second.text);
    assert.notEqual(r2[1], r0[1]); // a new launch, a new run ...
    assert.match(second.text, /restored false step 0/); // ... which restores nothing of the first
  } finally {
    agents.forEach((x) => x.kill());
    await Promise.all(agents.map((x) => x.done));
    await server.close();
  }
});

Deno.test("launch CLI: a store replaced under running agents is a StoreError on every agent, not a silent restart", async () => {
  // On this thread: the replacement must take the port at once (a Worker thread starts in 50-200 ms,
  // during which the agents' calls would be refused: a lost store, not a replaced one).
  let server = await startStoreServer({ hostname: "127.0.0.1", port: 0, token: "tk", thread: "main" });
  const port = server.port;
  const args = [
    "--nnodes",
    "2",
    "--nproc-per-node",
    "1",
    "--rdzv-endpoint",
    `127.0.0.1:${port}`,
    "--rdzv-id",
    "lost",
    "--token",
    "tk",
    "--max-restarts",
    "3",
    "--rdzv-conf",
    "last_call_timeout=0,join_timeout=30",
    "--monitor-interval",
    "0.5",
    "--grace-ms",
    "1000",
    ...sleeper,
  ];
  const agents = [new Agent(args), new Agent(args)];
  try {
    await Promise.all(agents.map((x) => x.waitFor(/round 0: 2 node\(s\)/)));
    await server.close(); // the store goes, and an empty one takes its place at once
    server = await startStoreServer({ hostname: "127.0.0.1", port, token: "tk", thread: "main" });
    const codes = await Promise.all(agents.map((x) => x.exitWithin(15_000)));
    assert.deepEqual(codes, [1, 1], agents.map((x) => x.text).join("\n--\n"));
    for (const x of agents) {
      assert.match(x.text, /launch: .*store at 127\.0\.0\.1:\d+ .*(lost|replaced)/);
      assert.doesNotMatch(x.text, /round 1/);
    }
  } finally {
    agents.forEach((x) => x.kill());
    await Promise.all(agents.map((x) => x.done));
    await server.close();
  }
});

Deno.test("ElasticState: restore() is false when nothing was committed, a StoreError when the store that held the commit is gone", async () => {
  let server = await startStoreServer({ hostname: "127.0.0.1", port: 0, token: "tk" });
  const port = server.port;
  const vars: Record<string, string> = {
    MASTER_ADDR: "127.0.0.1",
    MASTER_PORT: String(port),
    CHOIR_TOKEN: "tk",
    CHOIR_JOB_ID: "j1",
    CHOIR_STORE_EXTERNAL: "1",
    CHOIR_STORE_INSTANCE: "instance-one",
    RANK: "0",
  };
  const env = readEnv((k) => vars[k]);
  const raw = new TcpStore({ host: "127.0.0.1", port, token: "tk", timeoutMs: 5000 });
  const w = new Float32Array(2);
  const open = () => ElasticState.open({ tensors: { w }, values: { step: 0 }, env, timeoutMs: 3000 });
  try {
    await raw.set("choir/store-instance", "instance-one"); // what the launcher does when it creates the store
    const s0 = await open();
    assert.equal(await s0.restore(), false); // nothing was ever committed: start from scratch
    w.set([1, 2]);
    s0.values.step = 3;
    await s0.commit();
    const s1 = await open();
    assert.equal(await s1.restore(), true);
    assert.equal(s1.values.step, 3);
    await server.close(); // the store that held the commit goes; an empty one takes its place
    server = await startStoreServer({ hostname: "127.0.0.1", port, token: "tk" });
    const s2 = await open();
    await assert.rejects(
      s2.restore(),
      (e: unknown) =>
        e instanceof StoreError && /store at 127\.0\.0\.1:\d+ .*(lost|replaced)/.test(e.message),
    );
    await server.close(); // and no store at all: unreachable, also a StoreError
    const s3 = await open();
    await assert.rejects(s3.restore(), StoreError);
    for (const s of [s0, s1, s2, s3]) await s.close();
  } finally {
    await raw.close();
    await server.close();
  }
});
