/**
 * @module
 * The Worker thread that runs a store server (tcp_server.ts starts it): it serves on its own event loop
 * and answers the starting thread's messages (start, stats, close). Not part of the public API.
 */

import { PermissionError } from "../../errors.ts";
import { serveHere, type StoreServer, type ThreadReply, type ThreadRequest } from "./tcp_server.ts";

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
      const error = err instanceof Error ? err : new Error(String(err));
      self.postMessage({
        kind: "failed",
        error: {
          name: error.name,
          message: error.message,
          permission: error instanceof PermissionError ? error.permission : undefined,
          addrInUse: error.cause instanceof Deno.errors.AddrInUse,
        },
      });
    }
  } else if (m.kind === "stats") {
    if (server) self.postMessage({ kind: "stats", id: m.id, stats: await server.stats() });
  } else {
    await server?.close();
    self.postMessage({ kind: "closed" });
  }
};
