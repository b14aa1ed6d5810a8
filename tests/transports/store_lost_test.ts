/**
 * @module
 * A store server that shuts down under a waiting client and is not replaced: the client's one retry
 * after the "shutting down" answer is refused, and the wait fails with a StoreError saying the store
 * was lost (not a generic "cannot reach"), well within its timeout.
 */

import assert from "node:assert/strict";
import { StoreError } from "../../errors.ts";
import { startStoreServer, TcpStore } from "../../transports/store/mod.ts";

Deno.test("TcpStore: a wait whose server shuts down and stays gone is a StoreError naming the store lost", async () => {
  const server = await startStoreServer({ hostname: "127.0.0.1", port: 0, token: "tk-lost", thread: "main" });
  const store = new TcpStore({ host: "127.0.0.1", port: server.port, token: "tk-lost", timeoutMs: 20_000 });
  try {
    await store.set("ready", "1"); // contacted: a session is open
    const waiting = store.get("never");
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await server.close();
    await assert.rejects(waiting, (e: unknown) => {
      assert.ok(e instanceof StoreError, String(e));
      assert.match(e.message, /store at 127\.0\.0\.1:\d+ was lost: it shut down/);
      return true;
    });
    assert.ok(performance.now() - t0 < 5000, "took too long");
  } finally {
    await store.close();
    await server.close();
  }
});
