/**
 * @module
 * Test helper: counts the Workers a piece of code starts and those it leaves running (Deno's
 * sanitizers do not see a Worker left running).
 */

/** Runs `fn`, returning how many Workers it started and how many were not terminated at the end. */
export async function workersLeft(fn: () => Promise<void>): Promise<{ started: number; running: number }> {
  const Original = globalThis.Worker;
  const running = new Set<Worker>();
  let started = 0;
  globalThis.Worker = class extends Original {
    constructor(url: string | URL, opts?: WorkerOptions) {
      super(url, opts);
      started++;
      running.add(this);
    }
    override terminate(): void {
      running.delete(this);
      super.terminate();
    }
  };
  try {
    await fn();
  } finally {
    globalThis.Worker = Original;
  }
  return { started, running: running.size };
}
