/**
 * @module
 * SIGKILL of a random rank of 4 during every collective, over tcp and shm: every survivor gets
 * PeerLostError naming the killed rank within 3 s, and no process hangs. `CHOIR_KILL_TRIALS` sets the
 * trials per op and transport (default 1 in CI; the matrix is 20).
 */

import assert from "node:assert/strict";
import { startStoreServer } from "../../transports/store/mod.ts";

const script = new URL("../fixtures/kill_worker.ts", import.meta.url).pathname;
const trials = Math.max(1, Number(Deno.env.get("CHOIR_KILL_TRIALS") ?? 1));
const OPS = [
  "allReduce",
  "broadcast",
  "reduce",
  "allGather",
  "reduceScatter",
  "allToAll",
  "gather",
  "scatter",
  "barrier",
];

interface Trial {
  victim: number;
  results: { name: string; message: string; peer?: number; ms: number }[];
}

/** One job of 4 ranks running `op`; kills a random rank once it loops; returns the survivors' results. */
async function trial(op: string, transport: string, count: number): Promise<Trial> {
  const victim = Math.floor(Math.random() * 4);
  const server = await startStoreServer({ hostname: "127.0.0.1", port: 0, token: "kill-matrix" });
  const children = Array.from({ length: 4 }, (_, rank) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", script, String(count), op],
      env: {
        RANK: String(rank),
        WORLD_SIZE: "4",
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(server.port),
        CHOIR_TOKEN: "kill-matrix",
        CHOIR_STORE_EXTERNAL: "1",
        CHOIR_TRANSPORT: transport,
        NO_COLOR: "1",
      },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn());
  const guard = setTimeout(() => children.forEach((c) => c.kill("SIGKILL")), 40_000);
  try {
    const reader = children[victim].stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("READY")) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
    children[victim].kill("SIGKILL");
    reader.releaseLock();
    await children[victim].stdout.cancel().catch(() => {});
    const outs = await Promise.all(children.filter((_, r) => r !== victim).map((c) => c.output()));
    await children[victim].status;
    const dec = new TextDecoder();
    const results = outs.map((o) => {
      const text = dec.decode(o.stdout);
      const line = text.split("\n").find((l) => l.startsWith("RESULT "));
      assert.ok(line, `no result:\n${text}\n${dec.decode(o.stderr)}`);
      return JSON.parse(line.slice(7));
    });
    return { victim, results };
  } finally {
    clearTimeout(guard);
    for (const c of children) await c.stderr.cancel().catch(() => {});
    await server.close();
  }
}

for (const transport of ["tcp", "shm"]) {
  for (const op of OPS) {
    Deno.test(`SIGKILL of a random rank of 4 during ${op} (${transport}), ${trials} trial(s): the survivors name it`, async () => {
      for (let t = 0; t < trials; t++) {
        const { victim, results } = await trial(op, transport, op === "allReduce" ? 65536 : 4096);
        for (const r of results) {
          assert.equal(r.name, "PeerLostError", `${op} trial ${t}, victim ${victim}: ${r.message}`);
          assert.equal(r.peer, victim, `${op} trial ${t}: ${r.message}`);
          assert.ok(r.ms < 3000, `${op} trial ${t}: took ${r.ms} ms`);
        }
      }
    });
  }
}
