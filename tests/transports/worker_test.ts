/**
 * @module
 * The Worker transport's edges: a rank that never joins is named by RendezvousError within the
 * timeout, a module that cannot load is a TransportError, joining outside a Worker rank is refused,
 * and every Worker is terminated whatever the outcome.
 */

import assert from "node:assert/strict";
import { workerProcessGroup } from "../../collectives/worker_group.ts";
import { InvalidArgumentError, RendezvousError, TransportError } from "../../errors.ts";
import { spawnWorkers } from "../../transports/worker/spawn.ts";
import { workersLeft } from "../helpers/worker_count.ts";

Deno.test("worker: a rank that never joins gives RendezvousError within the timeout; no Worker is left", async () => {
  const counts = await workersLeft(async () => {
    const t0 = performance.now();
    await assert.rejects(
      spawnWorkers(2, new URL("../fixtures/idle_rank.ts", import.meta.url), { timeoutMs: 1500 }),
      (e: Error) => e instanceof RendezvousError && /rank 0 did not start within 1500 ms/.test(e.message),
    );
    assert.ok(performance.now() - t0 < 10_000);
  });
  assert.deepEqual(counts, { started: 1, running: 0 });
});

Deno.test("worker: a module that cannot be loaded is a TransportError naming it", async () => {
  const counts = await workersLeft(async () => {
    const url = new URL("../fixtures/no_such_rank.ts", import.meta.url);
    await assert.rejects(
      spawnWorkers(3, url, { timeoutMs: 20_000 }),
      (e: Error) => e instanceof TransportError && e.message.includes("no_such_rank.ts"),
    );
  });
  assert.deepEqual(counts, { started: 1, running: 0 });
});

Deno.test("worker: workerProcessGroup outside a Worker rank is refused", async () => {
  await assert.rejects(workerProcessGroup(), InvalidArgumentError);
});

Deno.test("worker: spawnWorkers refuses a non-positive rank count", async () => {
  await assert.rejects(spawnWorkers(0, new URL("../fixtures/idle_rank.ts", import.meta.url)), TransportError);
});
