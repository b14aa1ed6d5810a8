/**
 * @module
 * Authentication of the store, with real servers and real ranks: an impostor on MASTER_PORT learns no
 * token and every rank fails fast naming the address; a server of another job is refused; a captured
 * request replayed is refused; unknown paths and bad auth look alike (401); a token derived from a
 * scheduler's public job id is refused off loopback; a squatted FileStore directory is refused; file://
 * jobs get a random token in a 0600 file; the empty token is refused everywhere.
 */

import assert from "node:assert/strict";
import { AuthError, InvalidArgumentError, RendezvousError, StoreError } from "../../errors.ts";
import { createStore, FileStore, startStoreServer, TcpStore } from "../../transports/store/mod.ts";
import { TcpTransport } from "../../transports/tcp/transport.ts";
import { ShmTransport } from "../../transports/shm/transport.ts";
import { UcxTransport } from "../../transports/ucx/transport.ts";
import { MemoryStore } from "../../transports/store/mod.ts";
import { freePort, type RankOutput, runRanks } from "../helpers/ranks.ts";
import { containsBytes, impostor, recordingProxy, replay } from "../helpers/wire.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The `ERROR {name, message}` a rank of auth_rank.ts printed, or undefined. */
function errorOf(out: RankOutput): { name: string; message: string } | undefined {
  const line = out.stdout.split("\n").find((l) => l.startsWith("ERROR "));
  return line ? JSON.parse(line.slice(6)) : undefined;
}

function describe(outs: RankOutput[]): string {
  return outs.map((o) => `rank ${o.rank} exit ${o.code}\n${o.stdout}\n${o.stderr}`).join("\n---\n");
}

/** A non-loopback IPv4 address of this machine, or a documentation address when there is none. */
function outsideAddress(): string {
  const hit = Deno.networkInterfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."));
  return hit?.address ?? "192.0.2.77";
}

Deno.test("impostor on MASTER_PORT: it learns no token, and every rank fails fast with AuthError naming the address", async () => {
  const port = freePort();
  const token = "impostor-test-" + crypto.randomUUID();
  // Answers anything that looks like an HTTP request with 200 and 64 bytes: a well-formed reply whose
  // bytes prove nothing.
  const fake = impostor(port, (chunk) => {
    if (!dec.decode(chunk).includes("HTTP/1.1")) return undefined;
    const body = crypto.getRandomValues(new Uint8Array(64));
    const head = enc.encode(
      "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 64\r\n\r\n",
    );
    const out = new Uint8Array(head.length + 64);
    out.set(head);
    out.set(body, head.length);
    return out;
  });
  try {
    const t0 = performance.now();
    const outs = await runRanks({
      script: "tests/fixtures/auth_rank.ts",
      worldSize: 3,
      env: { MASTER_PORT: String(port), CHOIR_TOKEN: token, CHOIR_TIMEOUT: "30000", CHOIR_TRANSPORT: "tcp" },
      deadlineMs: 40_000,
    });
    const took = performance.now() - t0;
    for (const out of outs) {
      const err = errorOf(out);
      assert.ok(err, `rank ${out.rank} did not fail:\n${describe(outs)}`);
      assert.equal(err.name, "AuthError", describe(outs));
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`), describe(outs));
      assert.ok(!err.message.includes(token), "the error message holds the token");
    }
    assert.ok(took < 15_000, `ranks took ${took.toFixed(0)} ms to fail (their timeout is 30 s)`);
    assert.ok(fake.connections.length > 0, "no rank ever reached the impostor");
    assert.ok(!containsBytes(fake.allFromClients(), enc.encode(token)), "the impostor received the token");
  } finally {
    await fake.close();
  }
});

Deno.test("a store server of another job cannot prove the token: AuthError naming it, and the client's token never crosses", async () => {
  const server = await startStoreServer({ port: 0, token: "the-other-jobs-token" });
  const tap = recordingProxy({ hostname: "127.0.0.1", port: server.port });
  const mine = "this-jobs-token-" + crypto.randomUUID();
  const client = new TcpStore({ host: "127.0.0.1", port: tap.port, token: mine, timeoutMs: 5000 });
  try {
    await assert.rejects(client.set("k", "v"), (e: Error) => {
      assert.ok(e instanceof AuthError, String(e));
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${tap.port}`));
      assert.match(e.message, /store\.set/);
      return true;
    });
    assert.ok(!containsBytes(tap.allFromClients(), enc.encode(mine)), "the token crossed the wire");
  } finally {
    await client.close();
    await tap.close();
    await server.close();
  }
});

Deno.test("a store request captured on the wire and replayed is refused (401) and has no effect", async () => {
  const token = "replay-test-token";
  const server = await startStoreServer({ port: 0, token });
  const tap = recordingProxy({ hostname: "127.0.0.1", port: server.port });
  const client = new TcpStore({ host: "127.0.0.1", port: tap.port, token, timeoutMs: 5000 });
  const direct = new TcpStore({ host: "127.0.0.1", port: server.port, token, timeoutMs: 5000 });
  try {
    assert.equal(await client.add("counter", 5), 5);
    await client.close();
    assert.ok(tap.connections.length > 0);
    assert.ok(!containsBytes(tap.allFromClients(), enc.encode(token)), "the token crossed the wire");
    for (const rec of tap.connections) await replay(server.port, rec.fromClient);
    // The add ran once: a replay changed nothing.
    assert.equal(await direct.add("counter", 0), 5);
  } finally {
    await client.close();
    await direct.close();
    await tap.close();
    await server.close();
  }
});

Deno.test("store server: unknown paths, no auth, a bearer token and a forged signature get the same 401", async () => {
  const token = "same-401-token";
  const server = await startStoreServer({ port: 0, token });
  const base = `http://127.0.0.1:${server.port}`;
  try {
    const answers: { status: number; body: string; auth: string | null }[] = [];
    for (
      const [path, headers] of [
        ["/nope", {}],
        ["/v1/nope", {}],
        ["/v1/num-keys", {}],
        ["/v1/num-keys", { authorization: `Bearer ${token}` }],
        ["/v1/num-keys", { authorization: "Choir 00.1.00" }],
        ["/v1/kv/x", { authorization: "Bearer nope" }],
      ] as const
    ) {
      const res = await fetch(base + path, { headers });
      answers.push({ status: res.status, body: await res.text(), auth: res.headers.get("www-authenticate") });
    }
    for (const a of answers) assert.deepEqual(a, answers[0]);
    assert.equal(answers[0].status, 401);
    // A real client still works.
    const good = new TcpStore({ host: "127.0.0.1", port: server.port, token, timeoutMs: 5000 });
    assert.equal(await good.numKeys(), 0);
    await good.close();
  } finally {
    await server.close();
  }
});

Deno.test("a token derived from the SLURM job id is refused off loopback, naming CHOIR_TOKEN; on loopback it runs", async () => {
  const slurm = (host: string, port: number) => ({
    SLURM_PROCID: "0",
    SLURM_NTASKS: "1",
    SLURM_LOCALID: "0",
    SLURM_JOB_ID: "4242",
    SLURM_STEP_ID: "0",
    SLURM_JOB_NODELIST: host,
    MASTER_ADDR: host,
    MASTER_PORT: String(port),
    CHOIR_TIMEOUT: "10000",
  });
  const run = (env: Record<string, string>) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../fixtures/auth_rank.ts", import.meta.url).pathname],
      env: { NO_COLOR: "1", ...env },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
  const outside = outsideAddress();
  const off = await run(slurm(outside, freePort()));
  const offText = dec.decode(off.stdout) + dec.decode(off.stderr);
  assert.equal(off.code, 3, offText);
  assert.match(offText, /ERROR \{"name":"RendezvousError"/, offText);
  assert.match(offText, /CHOIR_TOKEN/, offText);
  assert.match(offText, /SLURM/, offText);
  assert.match(offText, new RegExp(outside.replaceAll(".", "\\.")), offText);

  const on = await run(slurm("127.0.0.1", freePort()));
  const onText = dec.decode(on.stdout) + dec.decode(on.stderr);
  assert.equal(on.code, 0, onText);
  assert.match(onText, /RESULT \{"rank":0,"sum":1\}/);
});

Deno.test("file://: a squatted directory (writable by others, or another user's) is refused by every rank", async () => {
  const parent = await Deno.makeTempDir({ prefix: "choir-squat-" });
  const open = `${parent}/open`;
  await Deno.mkdir(open);
  await Deno.chmod(open, 0o777);
  const cases: [string, string][] = [[open, "writable by others"]];
  if (Deno.uid() === 0) {
    const foreign = `${parent}/foreign`;
    await Deno.mkdir(foreign, { mode: 0o700 });
    await Deno.chown(foreign, 65534, 65534);
    cases.push([foreign, "owned by"]);
  } else {
    console.log("squatted FileStore: the foreign-owner case needs root to chown; checked only as root");
  }
  try {
    for (const [dir, why] of cases) {
      const outs = await runRanks({
        script: "tests/fixtures/auth_rank.ts",
        args: [`file://${dir}`],
        worldSize: 2,
        env: { CHOIR_TIMEOUT: "10000", CHOIR_TOKEN: "" },
        deadlineMs: 30_000,
      });
      for (const out of outs) {
        const err = errorOf(out);
        assert.ok(err, `rank ${out.rank} accepted ${dir}:\n${describe(outs)}`);
        assert.ok(["StoreError", "AuthError"].includes(err.name), describe(outs));
        assert.ok(err.message.includes(dir), describe(outs));
        assert.ok(err.message.includes(why), describe(outs));
      }
      // Nothing of the job was left in the squatted directory.
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    }
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("file://: the job's token is random and kept in a 0600 file inside the job's 0700 directory", async () => {
  const parent = await Deno.makeTempDir({ prefix: "choir-filetoken-" });
  const dir = `${parent}/job`;
  try {
    const [a, b] = await Promise.all(
      [0, 1].map((rank) => createStore(`file://${dir}`, { rank, worldSize: 2, timeoutMs: 5000 })),
    );
    assert.equal(a.token, b.token);
    assert.match(a.token, /^[0-9a-f]{64}$/);
    assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
    const files = [...Deno.readDirSync(dir)].map((e) => e.name);
    const tokenFile = files.find((n) => Deno.readTextFileSync(`${dir}/${n}`).trim() === a.token);
    assert.ok(tokenFile, `no file holds the token (${files.join(", ")})`);
    assert.equal(Deno.statSync(`${dir}/${tokenFile}`).mode! & 0o777, 0o600);
    // A rank given another token is refused, naming the directory.
    await assert.rejects(
      createStore(`file://${dir}`, { rank: 1, worldSize: 2, token: "something-else", timeoutMs: 5000 }),
      (e: Error) => e instanceof AuthError && e.message.includes(dir),
    );
    await a.close();
    await b.close();
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("file:// ranks over TCP connect with the directory's token (two real ranks, no CHOIR_TOKEN)", async () => {
  const parent = await Deno.makeTempDir({ prefix: "choir-filetcp-" });
  try {
    const outs = await runRanks({
      script: "tests/fixtures/auth_rank.ts",
      args: [`file://${parent}/job`],
      worldSize: 2,
      env: { CHOIR_TIMEOUT: "15000", CHOIR_TOKEN: "", CHOIR_TRANSPORT: "tcp" },
      deadlineMs: 40_000,
    });
    for (const out of outs) {
      assert.equal(out.code, 0, describe(outs));
      assert.match(out.stdout, /RESULT \{"rank":\d,"sum":3\}/);
    }
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("the empty token is refused everywhere: TCP, shm and UCX transports, store client and server, createStore", async () => {
  const store = new MemoryStore();
  const o = { rank: 0, size: 2, store, token: "", timeoutMs: 1000 };
  await assert.rejects(TcpTransport.create(o), InvalidArgumentError);
  await assert.rejects(ShmTransport.create(o), InvalidArgumentError);
  await assert.rejects(UcxTransport.create(o), InvalidArgumentError);
  assert.throws(() => new TcpStore({ host: "127.0.0.1", port: 1, token: "" }), InvalidArgumentError);
  await assert.rejects(startStoreServer({ port: 0, token: "" }), InvalidArgumentError);
  await assert.rejects(
    createStore(`tcp://127.0.0.1:${freePort()}`, { rank: 0, worldSize: 1, token: "" }),
    RendezvousError,
  );
  await store.close();
});

Deno.test("FileStore: a directory writable by others is refused when opened directly", async () => {
  const parent = await Deno.makeTempDir({ prefix: "choir-fsdir-" });
  try {
    await Deno.mkdir(`${parent}/g`);
    await Deno.chmod(`${parent}/g`, 0o770);
    assert.throws(
      () => new FileStore(`${parent}/g`),
      (e: Error) => e instanceof StoreError && /writable/.test(e.message),
    );
    // A fresh one is made 0700.
    const fs = new FileStore(`${parent}/fresh`);
    assert.equal(Deno.statSync(`${parent}/fresh`).mode! & 0o777, 0o700);
    await fs.close();
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});
