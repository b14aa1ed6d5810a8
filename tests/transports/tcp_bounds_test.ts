/**
 * @module
 * Bounded TCP listeners: idle connections are dropped within about a second and capped, a peer still
 * connects through a flood, and a rank whose accept fails with EMFILE (a flood under a low fd limit)
 * keeps accepting, so the job forms once the flood ends. Real listeners, real rank processes.
 */

import assert from "node:assert/strict";
import { MemoryStore, startStoreServer, TcpStore } from "../../transports/store/mod.ts";
import { TcpTransport } from "../../transports/tcp/transport.ts";
import { HANDSHAKE_IDLE_MS } from "../../transports/limits.ts";
import { type RankOutput, resultOf } from "../helpers/ranks.ts";

const ROOT = new URL("../../", import.meta.url);
const hdr = (bytes: number) => ({ group: 0, seq: 0, op: 1, dtype: 0, count: 1, root: -1, chunk: 0, bytes });

/** Opens `n` connections to `port` that send nothing; refused ones are counted, not thrown. */
async function openIdle(port: number, n: number): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < n; i++) {
    try {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    } catch { /* refused: the backlog is full */ }
  }
  return conns;
}

/** Resolves true once the server closed `conn` (EOF or reset), false if it is still open after `ms`. */
function closedWithin(conn: Deno.TcpConn, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    conn.read(new Uint8Array(16)).then(() => true, () => true),
    new Promise<boolean>((r) => timer = setTimeout(() => r(false), ms)),
  ]).finally(() => clearTimeout(timer));
}

/** A flood connection and whether the server closed it (one read watches each). */
interface Watched {
  conn: Deno.TcpConn;
  closed: boolean;
}

function watch(conns: Deno.TcpConn[]): Watched[] {
  return conns.map((conn) => {
    const w = { conn, closed: false };
    conn.read(new Uint8Array(16)).then(() => w.closed = true, () => w.closed = true);
    return w;
  });
}

function closeAll(conns: Deno.TcpConn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

Deno.test("tcp listener: idle connections are dropped within about a second", async () => {
  const store = new MemoryStore();
  const a = await TcpTransport.create({ rank: 0, size: 2, store, token: "t", timeoutMs: 10_000 });
  const idle = await openIdle(a.port, 200);
  try {
    const t0 = Date.now();
    const closed = await Promise.all(idle.map((c) => closedWithin(c, HANDSHAKE_IDLE_MS + 1500)));
    assert.equal(closed.filter((x) => !x).length, 0, "every idle connection is closed by the listener");
    assert.ok(Date.now() - t0 < HANDSHAKE_IDLE_MS + 1500);
  } finally {
    closeAll(idle);
    await a.close();
    await store.close();
  }
});

Deno.test("tcp listener: a peer connects while 300 idle connections are held open", async () => {
  const store = new MemoryStore();
  const a = await TcpTransport.create({ rank: 0, size: 2, store, token: "t", timeoutMs: 10_000 });
  const idle = await openIdle(a.port, 300);
  try {
    const b = await TcpTransport.create({ rank: 1, size: 2, store, token: "t", timeoutMs: 10_000 });
    const t0 = Date.now();
    const [ca, cb] = await Promise.all([a.channel(1), b.channel(0)]);
    const msg = new Uint8Array([9, 8, 7]);
    const got = new Uint8Array(3);
    await Promise.all([cb.send(hdr(3), msg), ca.recv(hdr(3), got)]);
    assert.deepEqual(got, msg);
    assert.ok(Date.now() - t0 < 5000, `connected in ${Date.now() - t0} ms`);
    await b.close();
  } finally {
    closeAll(idle);
    await a.close();
    await store.close();
  }
});

/** Spawns one rank of `bounds_rank.ts`; `fdLimit` runs it under `ulimit -n`. */
function spawnRank(
  rank: number,
  size: number,
  port: number,
  token: string,
  fdLimit?: number,
): Deno.ChildProcess {
  const script = new URL("tests/fixtures/bounds_rank.ts", ROOT).pathname;
  const deno = [
    Deno.execPath(),
    "run",
    "--allow-all",
    script,
    `127.0.0.1:${port}`,
    token,
    `${rank}`,
    `${size}`,
  ];
  const [cmd, args] = fdLimit === undefined
    ? [deno[0], deno.slice(1)]
    : ["bash", ["-c", `ulimit -n ${fdLimit} && exec "$@"`, "rank", ...deno]];
  return new Deno.Command(cmd, {
    args,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  })
    .spawn();
}

async function outputOf(rank: number, child: Deno.ChildProcess): Promise<RankOutput> {
  const out = await child.output();
  const dec = new TextDecoder();
  return { rank, code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The soft limit on open files of this process (`ulimit -n`), or undefined where bash is missing. */
async function openFileLimit(): Promise<number | undefined> {
  try {
    const out = await new Deno.Command("bash", { args: ["-c", "ulimit -n"], stdout: "piped" }).output();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    return Number.isFinite(n) ? n : Infinity;
  } catch {
    return undefined;
  }
}

const FLOOD = 500;
const limit = await openFileLimit();
const skipFlood = limit === undefined
  ? "bash is missing"
  : limit < FLOOD + 200
  ? `ulimit -n is ${limit}, below the ${FLOOD + 200} this test holds open`
  : "";
if (skipFlood) console.log(`tcp flood tests skipped: ${skipFlood}`);

for (const fdLimit of [undefined, 64]) {
  const what = fdLimit === undefined
    ? ""
    : ` (rank 0 under ulimit -n ${fdLimit}: its accepts fail with EMFILE)`;
  Deno.test({
    name: `tcp job: ${FLOOD} idle connections held against rank 0 while the job forms${what}; it forms`,
    ignore: skipFlood !== "",
    async fn() {
      const token = "bounds-" + crypto.randomUUID();
      const server = await startStoreServer({ port: 0, token });
      const store = new TcpStore({ host: "127.0.0.1", port: server.port, token, timeoutMs: 30_000 });
      const size = 3;
      const children: Deno.ChildProcess[] = [];
      const killer = setTimeout(() => {
        for (const c of children) {
          try {
            c.kill("SIGKILL");
          } catch { /* exited */ }
        }
      }, 90_000);
      let flood: Watched[] = [];
      try {
        for (let r = 0; r < size; r++) {
          children.push(spawnRank(r, size, server.port, token, r === 0 ? fdLimit : undefined));
        }
        const addr = new TextDecoder().decode(await store.get("bounds/addr/0"));
        const port = Number(addr.slice(addr.lastIndexOf(":") + 1));
        flood = watch(await openIdle(port, FLOOD));
        assert.ok(flood.length >= FLOOD / 2, `opened ${flood.length} connections`);
        // The others dial now: hold the flood meanwhile (re-opening what the listener drops), then end it.
        await store.set("go", "1");
        const until = Date.now() + 2500;
        while (Date.now() < until) {
          const kept = flood.filter((w) => !w.closed);
          closeAll(flood.filter((w) => w.closed).map((w) => w.conn));
          flood = kept.concat(watch(await openIdle(port, FLOOD - kept.length)));
          await new Promise((r) => setTimeout(r, 200));
        }
        closeAll(flood.map((w) => w.conn));
        flood = [];
        const outs = await Promise.all(children.map((c, r) => outputOf(r, c)));
        for (const o of outs) {
          assert.equal(o.code, 0, `rank ${o.rank} exited ${o.code}\n${o.stdout}\n${o.stderr}`);
          assert.equal(resultOf<{ sum: number }>(o).sum, 6);
        }
      } finally {
        clearTimeout(killer);
        closeAll(flood.map((w) => w.conn));
        for (const c of children) {
          try {
            c.kill("SIGKILL");
          } catch { /* exited */ }
        }
        await Promise.all(children.map((c) => c.status));
        await store.close();
        await server.close();
      }
    },
  });
}
