/**
 * @module
 * The Worker thread that runs a store server (tcp_server.ts starts it): the same bounded HTTP server,
 * session middleware and routes as on the main thread, on its own event loop; it answers the starting
 * thread's messages (start, stats, close). Not part of the public API.
 */

import { PermissionError } from "../../errors.ts";
import {
  serveHere,
  type StoreServer,
  type ThreadError,
  type ThreadReply,
  type ThreadRequest,
} from "./tcp_server.ts";

const self = globalThis as unknown as {
  onmessage: ((e: MessageEvent<ThreadRequest>) => void) | null;
  postMessage(m: ThreadReply): void;
};

let server: StoreServer | undefined;

self.onmessage = async (e) => {
  const m = e.data;
  if (m.kind === "start") {
    try {
      server = await serveHere({ ...m.opts, thread: "main" });
      self.postMessage({ kind: "started", hostname: server.hostname, port: server.port });
    } catch (err) {
      self.postMessage({ kind: "failed", error: crossing(err) });
    }
  } else if (m.kind === "stats") {
    if (!server) return;
    try {
      self.postMessage({ kind: "stats", id: m.id, stats: await server.stats() });
    } catch (err) {
      self.postMessage({ kind: "stats", id: m.id, error: crossing(err) });
    }
  } else {
    await server?.close();
    self.postMessage({ kind: "closed" });
  }
};

/** An error as it crosses to the starting thread (tcp_server.ts rebuilds its class). */
function crossing(err: unknown): ThreadError {
  const error = err instanceof Error ? err : new Error(String(err));
  return {
    name: error.name,
    message: error.message,
    permission: error instanceof PermissionError ? error.permission : undefined,
    addrInUse: error.cause instanceof Deno.errors.AddrInUse,
    addrNotAvailable: error.cause instanceof Deno.errors.AddrNotAvailable,
  };
}
