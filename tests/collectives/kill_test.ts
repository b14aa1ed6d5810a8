/**
 * @module
 * A rank killed with SIGKILL in the middle of allreduces: the survivors get PeerLostError naming it
 * within seconds (not the 20 s timeout), over tcp and over shared memory (tiny and chunked arena
 * paths), and nothing is left in /dev/shm.
 */

import assert from "node:assert/strict";
import { choirSegments, leftoverSegments } from "../helpers/shm_segments.ts";
import { startStoreServer } from "../../transports/store/mod.ts";

const script = new URL("../fixtures/kill_worker.ts", import.meta.url).pathname;

// Over TCP with 3+ ranks the survivors that only see a neighbour close its links learn the real
// cause through the store (failure_cause.ts), so every survivor names the killed rank.
for (
  const [transport, elems, worldSize, victim] of [
    ["tcp", 65536, 2, 1],
    ["tcp", 65536, 4, 2],
    ["tcp", 2, 4, 3],
    ["shm", 2, 3, 1],
    ["shm", 65536, 3, 1],
    ["shm", 2, 4, 2],
  ] as const
) {
  const name = `SIGKILL of rank ${victim} of ${worldSize} mid-allreduce (${transport}, ${elems * 4} B)`;
  Deno.test(`${name}: every survivor gets PeerLostError naming it`, async () => {
    const before = choirSegments();
    // The store runs here, as the launcher runs it, so it outlives any rank (rank 0 included).
    const server = await startStoreServer({ hostname: "127.0.0.1", port: 0, token: "kill-test" });
    const port = server.port;
    const children = Array.from({ length: worldSize }, (_, rank) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", script, String(elems)],
        env: {
          RANK: String(rank),
          WORLD_SIZE: String(worldSize),
          MASTER_ADDR: "127.0.0.1",
          MASTER_PORT: String(port),
          CHOIR_TOKEN: "kill-test",
          CHOIR_STORE_EXTERNAL: "1",
          CHOIR_TRANSPORT: transport,
          NO_COLOR: "1",
        },
        stdout: "piped",
        stderr: "piped",
        stdin: "null",
      }).spawn());
    const guard = setTimeout(() => children.forEach((c) => c.kill("SIGKILL")), 30_000);
    try {
      // Wait until the victim is looping, then kill it.
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
      const survivors = children.filter((_, r) => r !== victim);
      const outs = await Promise.all(survivors.map((c) => c.output()));
      await children[victim].status;
      for (const out of outs) {
        const text = new TextDecoder().decode(out.stdout);
        const line = text.split("\n").find((l) => l.startsWith("RESULT "));
        assert.ok(line, `no result:\n${text}\n${new TextDecoder().decode(out.stderr)}`);
        const r = JSON.parse(line.slice(7)) as { name: string; message: string; peer?: number; ms: number };
        assert.equal(r.name, "PeerLostError", r.message);
        assert.equal(r.peer, victim, r.message);
        assert.match(r.message, new RegExp(`rank ${victim}`));
        assert.ok(r.ms < 3000, `took ${r.ms} ms`);
      }
    } finally {
      clearTimeout(guard);
      for (const c of children) await c.stderr.cancel().catch(() => {});
      await server.close();
    }
    assert.deepEqual(await leftoverSegments(before), [], "a /dev/shm segment was left behind");
  });
}
