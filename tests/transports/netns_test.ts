/**
 * @module
 * Ranks on three "hosts": network namespaces joined by veth pairs to a bridge (needs root and `ip`;
 * skipped with the reason printed otherwise). Every collective runs right over the real network path;
 * with `tc netem` delay and loss (when the kernel has netem) results stay right; with a link set down
 * mid-collective the other ranks get a typed error within the timeout.
 */

import assert from "node:assert/strict";
import { startStoreServer } from "../../transports/store/mod.ts";
import { probeNetns } from "../helpers/netns_bed.ts";

const N = 3;
const BRIDGE = "choir-nbr";
const ns = (i: number) => `choir-ns${i}`;
const dev = (i: number) => `choir-v${i}`;
const TOKEN = "netns-test";
const dec = new TextDecoder();

// Decided before any test runs, so that a machine without them reports the tests ignored, not passed.
const support = await probeNetns("choir-pn");
if (support.netns) {
  console.log(`netns_test.ts: skipped: network namespaces are not available here (${support.netns})`);
} else if (support.netem) {
  console.log(
    `netns_test.ts: skipped: the netem test, tc netem is not available in this kernel (${support.netem})`,
  );
}

/** Runs a command; returns whether it exited 0, and its stderr. */
async function run(cmd: string, args: string[]): Promise<{ ok: boolean; err: string }> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
    return { ok: out.success, err: dec.decode(out.stderr).trim() };
  } catch (e) {
    return { ok: false, err: String(e) };
  }
}

/** Removes everything {@link setUp} may have made (a namespace lives on while a process is in it). */
async function tearDown(): Promise<void> {
  for (let i = 0; i < N; i++) {
    try {
      const out = await new Deno.Command("ip", { args: ["netns", "pids", ns(i)], stderr: "null" }).output();
      for (const pid of dec.decode(out.stdout).split(/\s+/).filter(Boolean)) {
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch { /* gone */ }
      }
    } catch { /* no such namespace */ }
    await run("ip", ["netns", "del", ns(i)]);
    await run("ip", ["link", "del", `${dev(i)}b`]);
  }
  await run("ip", ["link", "del", BRIDGE]);
}

/** Builds the bridge (10.77.0.254) and one namespace per rank (10.77.0.1..N); null or why it could not. */
async function setUp(): Promise<string | null> {
  await tearDown();
  const steps: [string, string[]][] = [
    ["ip", ["link", "add", BRIDGE, "type", "bridge"]],
    ["ip", ["addr", "add", "10.77.0.254/24", "dev", BRIDGE]],
    ["ip", ["link", "set", BRIDGE, "up"]],
  ];
  for (let i = 0; i < N; i++) {
    steps.push(
      ["ip", ["netns", "add", ns(i)]],
      ["ip", ["link", "add", dev(i), "type", "veth", "peer", "name", `${dev(i)}b`]],
      ["ip", ["link", "set", `${dev(i)}b`, "master", BRIDGE]],
      ["ip", ["link", "set", `${dev(i)}b`, "up"]],
      ["ip", ["link", "set", dev(i), "netns", ns(i)]],
      ["ip", ["netns", "exec", ns(i), "ip", "addr", "add", `10.77.0.${i + 1}/24`, "dev", dev(i)]],
      ["ip", ["netns", "exec", ns(i), "ip", "link", "set", dev(i), "up"]],
      ["ip", ["netns", "exec", ns(i), "ip", "link", "set", "lo", "up"]],
    );
  }
  for (const [cmd, args] of steps) {
    const r = await run(cmd, args);
    if (!r.ok) {
      await tearDown();
      return `\`${cmd} ${args.join(" ")}\` failed: ${r.err || "not permitted"}`;
    }
  }
  return null;
}

/** Starts rank i of `script` inside its namespace, as its own "host". */
function spawnRank(i: number, port: number, script: string, args: string[], env: Record<string, string>) {
  return new Deno.Command("ip", {
    args: ["netns", "exec", ns(i), Deno.execPath(), "run", "--allow-all", script, ...args],
    env: {
      RANK: String(i),
      WORLD_SIZE: String(N),
      LOCAL_RANK: "0",
      LOCAL_WORLD_SIZE: "1",
      MASTER_ADDR: "10.77.0.254",
      MASTER_PORT: String(port),
      CHOIR_TOKEN: TOKEN,
      CHOIR_STORE_EXTERNAL: "1",
      CHOIR_HOST_ID: `netns-host-${i}`,
      NO_COLOR: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
}

function resultOf<T>(out: Deno.CommandOutput): T {
  const text = dec.decode(out.stdout);
  const line = text.split("\n").find((l) => l.startsWith("RESULT "));
  assert.ok(line, `no result:\n${text}\n${dec.decode(out.stderr)}`);
  return JSON.parse(line.slice(7)) as T;
}

const here = (p: string) => new URL(`../${p}`, import.meta.url).pathname;

/**
 * Builds the namespaces, runs `body` with a maker of fresh stores on the bridge, and removes everything.
 * Each job gets a fresh store, as a launcher on the head node would run it (a reused store would hand
 * the next job the last one's listener addresses).
 */
async function withNamespaces(body: (store: () => Promise<number>) => Promise<void>): Promise<void> {
  const why = await setUp();
  if (why) throw new Error(`the network namespaces could not be built: ${why}`);
  const stores: { close(): Promise<void> }[] = [];
  const store = async () => {
    const s = await startStoreServer({ hostname: "10.77.0.254", port: 0, token: TOKEN });
    stores.push(s);
    return s.port;
  };
  try {
    await body(store);
  } finally {
    for (const s of stores) await s.close();
    await tearDown();
  }
}

Deno.test({
  name: "3 ranks in 3 network namespaces over veth: every collective right; a link down",
  ignore: support.netns !== null,
  fn: (t) =>
    withNamespaces(async (store) => {
      await t.step("every collective over the real network path", async () => {
        const cfg = JSON.stringify({ lengths: [0, 1, 1001], big: 30_011, chunkBytes: 8192 });
        const port = await store();
        const kids = Array.from(
          { length: N },
          (_, i) => spawnRank(i, port, here("fixtures/collective_worker.ts"), [cfg], {}),
        );
        const timer = setTimeout(() => kids.forEach((k) => k.kill("SIGKILL")), 120_000);
        const outs = await Promise.all(kids.map((k) => k.output()));
        clearTimeout(timer);
        for (const [i, o] of outs.entries()) {
          const r = resultOf<{ checks: number; failures: string[] }>(o);
          assert.deepEqual(r.failures, [], `rank ${i}`);
          assert.ok(r.checks > 300, `rank ${i}: ${r.checks} checks`);
        }
      });

      await t.step("a link set down mid-collective: a typed error within the timeout", async () => {
        const timeoutMs = 4000;
        const port = await store();
        const kids = Array.from(
          { length: N },
          (_, i) => spawnRank(i, port, here("fixtures/netns_worker.ts"), ["60", String(timeoutMs)], {}),
        );
        const kill = (k: Deno.ChildProcess) => {
          try {
            k.kill("SIGKILL");
          } catch { /* exited */ }
        };
        const timer = setTimeout(() => kids.forEach(kill), 60_000);
        const outputs = Promise.all(kids.map((k) => k.output()));
        // Let the ranks meet and loop for a while, then cut rank 1's link.
        await new Promise((r) => setTimeout(r, 6000));
        const down = await run("ip", ["netns", "exec", ns(1), "ip", "link", "set", dev(1), "down"]);
        assert.ok(down.ok, down.err);
        const outs = await outputs;
        clearTimeout(timer);
        // Every rank, the cut-off one too, ends with a typed error: the timeout, plus at most the hang
        // report's bounded window (5 s) and the failure record (1 s; the cut-off rank cannot reach the
        // store at all, so it waits out both).
        for (const i of [0, 1, 2]) {
          const r = resultOf<{ calls: number; error: { name: string; message: string; ms: number } | null }>(
            outs[i],
          );
          assert.ok(r.calls > 0, `rank ${i} made no call before the link went down`);
          assert.ok(r.error, `rank ${i} saw no error`);
          assert.match(r.error.name, /CollectiveTimeoutError|PeerLostError|TransportError/, r.error.message);
          assert.ok(r.error.ms < timeoutMs + 8000, `rank ${i}: took ${r.error.ms} ms`);
        }
      });
    }),
});

Deno.test({
  name: "3 ranks in 3 network namespaces over veth: tc netem delay and loss on one link",
  ignore: support.netns !== null || support.netem !== null,
  fn: (t) =>
    withNamespaces(async (store) => {
      await t.step("delay 20 ms and 1% loss on one link: results stay right", async () => {
        const netem = await run("ip", [
          "netns",
          "exec",
          ns(1),
          "tc",
          "qdisc",
          "add",
          "dev",
          dev(1),
          "root",
          "netem",
          "delay",
          "20ms",
          "loss",
          "1%",
        ]);
        assert.ok(netem.ok, `tc netem worked in the probe but not here: ${netem.err}`);
        const port = await store();
        const kids = Array.from(
          { length: N },
          (_, i) => spawnRank(i, port, here("fixtures/netns_worker.ts"), ["8"], {}),
        );
        const outs = await Promise.all(kids.map((k) => k.output()));
        await run("ip", ["netns", "exec", ns(1), "tc", "qdisc", "del", "dev", dev(1), "root"]);
        for (const [i, o] of outs.entries()) {
          const r = resultOf<{ calls: number; wrong: string[]; error: unknown }>(o);
          assert.equal(r.error, null, `rank ${i}`);
          assert.deepEqual(r.wrong, [], `rank ${i}`);
        }
      });
    }),
});
