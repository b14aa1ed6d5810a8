/**
 * @module
 * Strangers at the door: while a 2-rank job allreduces over TCP, 1,000 random-byte payloads go to the
 * store server's port and 1,000 to each rank's transport listener, plus requests with a wrong or no
 * token. Nothing is accepted, nothing crashes, and every result of the job stays right.
 */

import assert from "node:assert/strict";
import { startStoreServer, TcpStore } from "../../transports/store/mod.ts";

const script = new URL("../fixtures/fuzz_worker.ts", import.meta.url).pathname;
const TOKEN = "fuzz-test-token";

/** Sends `count` random payloads (1-512 bytes each, one connection each) to `port`. */
async function hammer(port: number, count: number): Promise<number> {
  let sent = 0;
  for (let i = 0; i < count; i++) {
    const bytes = crypto.getRandomValues(new Uint8Array(1 + Math.floor(Math.random() * 512)));
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(bytes);
        sent++;
      } catch {
        // The listener may drop us mid-write: that is a refusal too.
      } finally {
        conn.close();
      }
    } catch {
      // Refused outright.
    }
  }
  return sent;
}

Deno.test("1,000 random payloads to the store and to each transport port, and wrong tokens: the job completes correctly", async () => {
  const server = await startStoreServer({ hostname: "127.0.0.1", port: 0, token: TOKEN });
  const children = [0, 1].map((rank) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", script, "5"],
      env: {
        RANK: String(rank),
        WORLD_SIZE: "2",
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(server.port),
        CHOIR_TOKEN: TOKEN,
        CHOIR_STORE_EXTERNAL: "1",
        CHOIR_TRANSPORT: "tcp",
        NO_COLOR: "1",
      },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn()
  );
  const guard = setTimeout(() => children.forEach((c) => c.kill("SIGKILL")), 60_000);
  const store = new TcpStore({ host: "127.0.0.1", port: server.port, token: TOKEN, timeoutMs: 20_000 });
  try {
    // The ranks' transport listeners, as they published them.
    const dec = new TextDecoder();
    const ports = await Promise.all(
      [0, 1].map(async (r) => Number(dec.decode(await store.get(`pg0/tcp/addr/${r}`)).split(":").pop())),
    );
    // Wrong and missing tokens are refused by the store.
    for (const auth of ["Bearer wrong", "", "Basic Zm9vOmJhcg=="]) {
      const res = await fetch(`http://127.0.0.1:${server.port}/v1/kv/pg0%2Ftcp%2Faddr%2F0`, {
        headers: auth ? { authorization: auth } : {},
      });
      await res.body?.cancel();
      assert.equal(res.status, 401, `store answered ${res.status} to "${auth}"`);
    }
    const sent = await Promise.all([
      hammer(server.port, 1000),
      hammer(ports[0], 1000),
      hammer(ports[1], 1000),
    ]);
    assert.ok(sent.every((s) => s > 0), `payloads sent: ${sent}`);
    const outs = await Promise.all(children.map((c) => c.output()));
    for (const [r, out] of outs.entries()) {
      const text = dec.decode(out.stdout);
      const line = text.split("\n").find((l) => l.startsWith("RESULT "));
      assert.ok(line, `rank ${r} printed no result:\n${text}\n${dec.decode(out.stderr)}`);
      const res = JSON.parse(line.slice(7)) as { calls: number; failures: string[] };
      assert.deepEqual(res.failures, [], `rank ${r}`);
      assert.ok(res.calls >= 20, `rank ${r} made ${res.calls} calls`);
      assert.equal(out.code, 0, `rank ${r} exit code`);
    }
  } finally {
    clearTimeout(guard);
    await store.close();
    await server.close();
  }
});
