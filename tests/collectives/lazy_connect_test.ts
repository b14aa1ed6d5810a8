/**
 * @module
 * Lazy links over real processes and sockets: 24 ranks in 3 processes join with no links at all, an
 * allToAll (every pair exchanges) opens exactly one link per pair on first use, point-to-point still
 * reaches its peer, and status() and explain() report the links held.
 */

import assert from "node:assert/strict";
import { startStoreServer } from "../../transports/store/mod.ts";

interface LazyResult {
  rank: number;
  before: number;
  after: number;
  wrong: number;
  ring: number;
  mode: string;
  statusConnections: number;
  explained: number;
}

Deno.test("lazy links: 24 ranks in 3 processes, every rank reaches every other on first use, one link per pair", async () => {
  const token = crypto.randomUUID();
  const server = await startStoreServer({ port: 0, token });
  const world = 24, procs = 3;
  const script = new URL("../fixtures/lazy_ranks.ts", import.meta.url).pathname;
  const children = Array.from({ length: procs }, (_, p) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", script, String(p * 8), "8", String(world), String(server.port), token],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).spawn());
  try {
    const results: LazyResult[] = [];
    await Promise.all(children.map(async (c) => {
      let buf = "";
      for await (const chunk of c.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        const line = buf.split("\n").find((l) => l.startsWith("RESULT "));
        if (line) {
          results.push(...(JSON.parse(line.slice(7)) as LazyResult[]));
          break;
        }
      }
    }));
    assert.equal(results.length, world, "every rank reported");
    for (const r of results) {
      assert.equal(r.mode, "lazy");
      assert.equal(r.before, 0, `rank ${r.rank} held links before its first collective`);
      assert.equal(r.wrong, 0, `rank ${r.rank} got wrong allToAll blocks`);
      assert.equal(r.after, world - 1, `rank ${r.rank}: one link per peer after allToAll`);
      assert.equal(r.ring, (r.rank + world - 1) % world, `rank ${r.rank}: point-to-point`);
      assert.equal(r.statusConnections, r.explained);
      assert.ok(r.statusConnections >= world - 1);
    }
  } finally {
    for (const c of children) {
      const w = c.stdin.getWriter();
      await w.write(new TextEncoder().encode("done\n")).catch(() => {});
      await w.close().catch(() => {});
    }
    const codes = await Promise.all(children.map(async (c) => {
      const out = await c.output().catch(() => null);
      return out ? `${out.code} ${new TextDecoder().decode(out.stderr).slice(0, 2000)}` : "?";
    }));
    await server.close();
    for (const c of codes) assert.match(c, /^0 /, c);
  }
});
