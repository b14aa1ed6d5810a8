/**
 * @module
 * The accept loop every choir listener runs: an accept error (EMFILE when the process is out of file
 * descriptors, a connection reset before it was accepted) never ends it; it frees what it can, backs off
 * and tries again. Only closing the listener ends it. What to do with a connection is the caller's.
 */

import { ACCEPT_BACKOFF_MAX_MS, ACCEPT_BACKOFF_MIN_MS } from "./limits.ts";

/** What {@link acceptLoop} calls. */
export interface AcceptHandlers<C extends Deno.Conn> {
  /** Takes a new connection (synchronously: the loop goes on accepting at once). */
  onConn(conn: C): void;
  /**
   * Called when accepting failed, e.g. EMFILE: close something expendable (an idle or silent
   * connection) and return true, so that the loop retries at once; false makes it back off.
   */
  onPressure(err: unknown): boolean;
  /** Whether the owner closed (the listener's own error then ends the loop quietly). */
  closed(): boolean;
}

/** Accepts until the listener closes; resolves then. `stop` cuts a back-off pause short. */
export async function acceptLoop<C extends Deno.Conn>(
  listener: Deno.Listener<C>,
  h: AcceptHandlers<C>,
  stop: AbortSignal,
): Promise<void> {
  prepareForFdExhaustion();
  let pause = ACCEPT_BACKOFF_MIN_MS;
  while (!h.closed()) {
    let conn: C;
    try {
      conn = await listener.accept();
    } catch (err) {
      if (h.closed() || err instanceof Deno.errors.BadResource) return;
      if (h.onPressure(err)) continue;
      await pauseFor(pause, stop);
      pause = Math.min(pause * 2, ACCEPT_BACKOFF_MAX_MS);
      continue;
    }
    pause = ACCEPT_BACKOFF_MIN_MS;
    h.onConn(conn);
  }
}

/** Whether an accept failed because the process or system ran out of descriptors or buffers. */
export function isFdExhaustion(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "EMFILE" || code === "ENFILE" || code === "ENOBUFS" || code === "ENOMEM";
}

function pauseFor(ms: number, stop: AbortSignal): Promise<void> {
  if (stop.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stop.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stop.addEventListener("abort", done, { once: true });
  });
}

let prepared = false;

/**
 * Deno (2.9) sets up its signal handling lazily, and that setup needs a file descriptor: when it
 * happens while the process is out of them, Deno panics. Setting it up before a listener can be
 * flooded keeps an EMFILE a pause instead of a crash.
 */
function prepareForFdExhaustion(): void {
  if (prepared) return;
  prepared = true;
  const noop = () => {};
  try {
    Deno.addSignalListener("SIGWINCH", noop);
    Deno.removeSignalListener("SIGWINCH", noop);
  } catch { /* no such signal here (Windows): nothing to prepare */ }
}
