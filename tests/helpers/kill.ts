/**
 * @module
 * Test helper: one job of real rank processes running a collective in a loop (tests/fixtures/
 * kill_worker.ts) against a store run here (as the launcher runs it, so it outlives any rank); once the
 * victim is looping it gets SIGKILL, and the survivors' results come back.
 */

import assert from "node:assert/strict";
import { startStoreServer } from "../../transports/store/mod.ts";

const script = new URL("../fixtures/kill_worker.ts", import.meta.url).pathname;

/** What one survivor reported. */
export interface SurvivorResult {
  /** Error class name. */
  name: string;
  /** Error message. */
  message: string;
  /** The peer the error names. */
  peer?: number;
  /** Milliseconds from its last successful call to the error. */
  ms: number;
}

/** One kill trial. */
export interface KillTrial {
  /** Collective the ranks loop on (kill_worker.ts's names). */
  op: string;
  /** `tcp`, `shm` or `ucx`. */
  transport: string;
  /** Elements per rank. */
  count: number;
  /** Ranks in the job. */
  worldSize: number;
  /** The rank that gets SIGKILL. */
  victim: number;
  /** The rank program (default tests/fixtures/kill_worker.ts). */
  script?: URL;
  /** Its arguments (default: the count and the op, as kill_worker.ts takes them). */
  args?: string[];
  /** Extra environment of every rank (e.g. UCX_TLS), or per rank. */
  env?: Record<string, string> | ((rank: number) => Record<string, string>);
  /**
   * Rank 0 serves the store, as with plain env:// and no launcher: the store dies with rank 0, and
   * every rank's program exits as soon as it has its error.
   */
  storeOnRank0?: boolean;
  /**
   * What the victim gets (default SIGKILL). SIGSTOP freezes it as a vanished host would look: no
   * FIN, no RST, just silence; it gets SIGKILL once the survivors have reported.
   */
  signal?: "SIGKILL" | "SIGSTOP";
}

/** A TCP port nothing listens on right now. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Runs one trial; returns the survivors' results (each rank's `RESULT` line) in rank order. */
export async function killTrial<T extends SurvivorResult = SurvivorResult>(t: KillTrial): Promise<T[]> {
  const server = t.storeOnRank0
    ? null
    : await startStoreServer({ hostname: "127.0.0.1", port: 0, token: "kill-test" });
  const port = server?.port ?? freePort();
  const children = Array.from({ length: t.worldSize }, (_, rank) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", t.script?.pathname ?? script, ...(t.args ?? [String(t.count), t.op])],
      env: {
        RANK: String(rank),
        WORLD_SIZE: String(t.worldSize),
        MASTER_ADDR: "127.0.0.1",
        MASTER_PORT: String(port),
        CHOIR_TOKEN: "kill-test",
        ...(server ? { CHOIR_STORE_EXTERNAL: "1" } : {}),
        CHOIR_TRANSPORT: t.transport,
        NO_COLOR: "1",
        ...(typeof t.env === "function" ? t.env(rank) : t.env),
      },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn());
  const guard = setTimeout(() => children.forEach((c) => c.kill("SIGKILL")), 40_000);
  try {
    // Wait until the victim is looping, then kill it.
    const reader = children[t.victim].stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("READY")) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
    children[t.victim].kill(t.signal ?? "SIGKILL");
    reader.releaseLock();
    const outs = await Promise.all(children.filter((_, r) => r !== t.victim).map((c) => c.output()));
    if (t.signal === "SIGSTOP") children[t.victim].kill("SIGKILL");
    await children[t.victim].stdout.cancel().catch(() => {});
    await children[t.victim].status;
    const dec = new TextDecoder();
    return outs.map((o) => {
      const text = dec.decode(o.stdout);
      // UCX prints its own warnings on stdout, and one may share a line with RESULT.
      const line = text.split("\n").map((l) => l.slice(Math.max(0, l.indexOf("RESULT {")))).find((l) =>
        l.startsWith("RESULT ")
      );
      assert.ok(line, `no result (exit ${o.code}, signal ${o.signal}):\n${text}\n${dec.decode(o.stderr)}`);
      return JSON.parse(line.slice(7)) as T;
    });
  } finally {
    clearTimeout(guard);
    for (const c of children) await c.stderr.cancel().catch(() => {});
    await server?.close();
  }
}

/** Asserts that every survivor got PeerLostError naming `victim` within 3 s. */
export function assertNamed(results: readonly SurvivorResult[], victim: number, what: string): void {
  for (const r of results) {
    assert.equal(r.name, "PeerLostError", `${what}: ${r.message}`);
    assert.equal(r.peer, victim, `${what}: ${r.message}`);
    assert.match(r.message, new RegExp(`rank ${victim}`), what);
    assert.ok(r.ms < 3000, `${what}: took ${r.ms} ms`);
  }
}
