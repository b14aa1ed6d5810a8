/**
 * @module
 * Two processes started with the same RANK of a 3-rank job (env://, no launcher): every process of the
 * job, the two claimants and the innocent ranks alike, fails with a RendezvousError naming the rank and
 * both claimants' pids, whether the duplicate arrives with the others or after the job has started, over
 * TCP and over shared memory, and for rank 0 (which serves the store). No process hangs and no sum
 * comes out wrong.
 */

import assert from "node:assert/strict";
import { freePort } from "../helpers/ranks.ts";

const script = new URL("../fixtures/duplicate_rank.ts", import.meta.url).pathname;
const haveShm = (() => {
  try {
    return Deno.statSync("/dev/shm").isDirectory;
  } catch {
    return false;
  }
})();
if (!haveShm) console.log("duplicate_rank_test: shm cases ignored: no /dev/shm on this machine");

interface Proc {
  rank: number;
  child: Deno.ChildProcess;
  /** Resolves on `READY`; rejects if the process ends first. */
  ready: Promise<void>;
  /** Everything it printed, once it has exited. */
  done: Promise<{ stdout: string; stderr: string }>;
}

interface Result {
  name: string;
  message: string;
  calls: number;
  wrong: number;
}

function job(transport: string) {
  const port = freePort();
  const token = "dup-" + crypto.randomUUID();
  const procs: Proc[] = [];
  const kill = () => {
    for (const p of procs) {
      try {
        p.child.kill("SIGKILL");
      } catch { /* exited */ }
    }
  };
  const start = (rank: number): Proc => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", script, "30000"],
      env: {
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: "3",
        LOCAL_WORLD_SIZE: "3",
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        CHOIR_TOKEN: token,
        CHOIR_TRANSPORT: transport,
        CHOIR_TIMEOUT: "20000",
        NO_COLOR: "1",
      },
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
      return { stdout, stderr: await new Response(child.stderr).text() };
    })();
    const ready = readyOrEnd.then(() => {
      if (!sawReady) throw new Error(`rank ${rank} (pid ${child.pid}) ended before READY`);
    });
    ready.catch(() => {}); // awaited only where the job must be running
    const p = { rank, child, ready, done };
    procs.push(p);
    return p;
  };
  // Nothing may hang: whatever still runs after 90 s is killed (and the test then fails).
  const guard = setTimeout(() => kill(), 90_000);
  const finish = async () => {
    try {
      return await Promise.all(
        procs.map(async (p) => ({ p, out: await p.done, status: await p.child.status })),
      );
    } finally {
      clearTimeout(guard);
    }
  };
  return { start, finish, kill };
}

function resultOf(rank: number, stdout: string, stderr: string): Result {
  const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) throw new Error(`rank ${rank} printed no RESULT\n${stdout}\n${stderr}`);
  return JSON.parse(line.slice(7)) as Result;
}

async function duplicateJob(transport: string, late: boolean, dup = 1): Promise<void> {
  const { start, finish, kill } = job(transport);
  const first = [0, 1, 2].flatMap((r) => r === dup && !late ? [start(r), start(r)] : [start(r)]);
  if (late) {
    try {
      await Promise.all(first.map((p) => p.ready));
    } catch (e) {
      kill();
      await finish();
      throw e;
    }
    start(dup); // the job runs: a second process with this RANK turns up
  }
  const outs = await finish();
  const pids = outs.filter(({ p }) => p.rank === dup).map(({ p }) => p.child.pid);
  assert.equal(pids.length, 2);
  const results = outs.map(({ p, out }) => ({ p, r: resultOf(p.rank, out.stdout, out.stderr) }));
  const all = results.map(({ p, r }) =>
    `rank ${p.rank} (pid ${p.child.pid}): ${r.name}: ${r.message}` +
    ` [${r.calls} calls, ${r.wrong} wrong]`
  ).join("\n");
  for (const { r } of results) {
    assert.equal(r.wrong, 0, `wrong sums:\n${all}`);
    assert.equal(r.name, "RendezvousError", all);
    assert.match(r.message, new RegExp(`rank ${dup} joined twice`), all);
    for (const pid of pids) assert.match(r.message, new RegExp(`pid ${pid}\\b`), `names pid ${pid}:\n${all}`);
  }
}

for (const transport of ["tcp", "shm"]) {
  for (const late of [false, true]) {
    Deno.test({
      name: `duplicate rank over ${transport}, ${
        late ? "one arriving after the job started" : "both arriving together"
      }: every process fails with RendezvousError naming rank 1 and both pids`,
      ignore: transport === "shm" && !haveShm,
      fn: () => duplicateJob(transport, late),
    });
  }
}

Deno.test(
  "duplicate rank 0 over tcp (the second cannot serve the store, so it joins as a client): every process fails naming rank 0",
  () => duplicateJob("tcp", false, 0),
);
