/**
 * @module
 * The run-queue probe the shared-memory arena asks when a spin runs out: it reads the kernel's count of
 * runnable threads (at least this one) and compares it with the cores it is given.
 */

import assert from "node:assert/strict";
import { libc } from "../../transports/shm/libc.ts";
import { RunQueue } from "../../transports/shm/run_queue.ts";

const linux = Deno.build.os === "linux";
if (!linux) console.log("run_queue_test: skipped, /proc/loadavg is Linux's");

Deno.test({
  name:
    "run queue: counts this thread, and calls the machine crowded only with more runnable threads than cores",
  ignore: !linux,
  fn() {
    const lib = libc();
    const many = RunQueue.open(lib, 1_000_000);
    const none = RunQueue.open(lib, 0);
    assert.ok(many && none, "/proc/loadavg opens");
    try {
      assert.ok(many.running() >= 1, `running ${many.running()}: this thread is runnable`);
      assert.equal(many.crowded(), false, "a million cores are never all busy");
      assert.equal(none.crowded(), true, "with no cores, any runnable thread waits for one");
    } finally {
      many.close();
      none.close();
    }
  },
});
