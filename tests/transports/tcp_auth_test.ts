/**
 * @module
 * The TCP handshake's mutual proof, with real transports and a stranger on raw sockets: a captured
 * handshake replayed is refused; a stranger's hello with a wrong or missing proof is refused; a rank
 * dialling an impostor learns nothing and fails with AuthError naming the address; the legacy hello
 * carrying the raw token is refused. The job still connects afterwards.
 */

import assert from "node:assert/strict";
import { AuthError, TransportError } from "../../errors.ts";
import { encodeHeader, HEADER_BYTES } from "../../transports/frame.ts";
import { MemoryStore } from "../../transports/store/mod.ts";
import { TcpTransport } from "../../transports/tcp/transport.ts";
import { containsBytes, impostor, recordingProxy, replay } from "../helpers/wire.ts";

const enc = new TextEncoder();
const TOKEN = "tcp-auth-test-token";
const hdr = (bytes: number) => ({ group: 0, seq: 0, op: 1, dtype: 0, count: 1, root: -1, chunk: 0, bytes });

/** A hello as a stranger would write it from the published layout: version 2, a nonce of its own. */
function strangerHello(from: number, to: number, size: number): Uint8Array {
  const msg = new Uint8Array(56);
  const v = new DataView(msg.buffer);
  v.setUint32(0, 0x43485348, true);
  v.setUint16(4, 2, true);
  v.setUint32(8, 0, true);
  v.setUint32(12, from, true);
  v.setUint32(16, to, true);
  v.setUint32(20, size, true);
  msg.set(crypto.getRandomValues(new Uint8Array(32)), 24);
  return msg;
}

async function readN(conn: Deno.Conn, n: number, ms = 3000): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  let off = 0;
  const timer = setTimeout(() => conn.close(), ms);
  try {
    while (off < n) {
      const got = await conn.read(out.subarray(off)).catch(() => null);
      if (got === null) return off === 0 ? null : out.subarray(0, off);
      off += got;
    }
    return out;
  } finally {
    clearTimeout(timer);
  }
}

/** Checks that `a` (rank 0) and `b` (rank 1) exchange a frame. */
async function exchange(a: TcpTransport, b: TcpTransport): Promise<void> {
  const [ca, cb] = await Promise.all([a.channel(1), b.channel(0)]);
  const msg = new Uint8Array([9, 8, 7]);
  const got = new Uint8Array(3);
  await Promise.all([cb.send(hdr(3), msg), ca.recv(hdr(3), got)]);
  assert.deepEqual(got, msg);
}

Deno.test("tcp handshake: a captured handshake replayed to a fresh rank is refused", async () => {
  const store = new MemoryStore();
  const a = await TcpTransport.create({ rank: 0, size: 2, store, token: TOKEN, timeoutMs: 5000 });
  const tap = recordingProxy({ hostname: "127.0.0.1", port: a.port });
  await store.set("addr/0", `127.0.0.1:${tap.port}`);
  const b = await TcpTransport.create({ rank: 1, size: 2, store, token: TOKEN, timeoutMs: 5000 });
  await exchange(a, b);
  await b.close();
  await a.close();
  await tap.close();
  assert.ok(!containsBytes(tap.allFromClients(), enc.encode(TOKEN)), "the token crossed the wire");

  // A fresh rank 0 of the same job: the stranger replays what rank 1 sent, byte for byte.
  const store2 = new MemoryStore();
  const a2 = await TcpTransport.create({ rank: 0, size: 2, store: store2, token: TOKEN, timeoutMs: 1500 });
  const pending = a2.channel(1);
  pending.catch(() => {});
  for (const rec of tap.connections) await replay(a2.port, rec.fromClient, 1000);
  await assert.rejects(
    pending,
    (e: Error) => e instanceof TransportError && /did not connect/.test(e.message),
  );
  await a2.close();
  await store.close();
  await store2.close();
});

Deno.test("tcp handshake: a stranger's hello with a wrong, missing or zero proof is refused; the job then connects", async () => {
  const store = new MemoryStore();
  const a = await TcpTransport.create({ rank: 0, size: 2, store, token: TOKEN, timeoutMs: 8000 });
  const pending = a.channel(1);
  for (const proof of ["random", "zeros", "none", "short"] as const) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: a.port });
    await c.write(strangerHello(1, 0, 2));
    const challenge = await readN(c, 64);
    assert.ok(challenge && challenge.length === 64, `${proof}: no challenge`);
    if (proof === "random") await c.write(crypto.getRandomValues(new Uint8Array(32)));
    if (proof === "zeros") await c.write(new Uint8Array(32));
    if (proof === "short") await c.write(new Uint8Array(5));
    if (proof === "none" || proof === "short") await c.closeWrite();
    const verdict = await readN(c, 1);
    // Refused: the acceptor says so (1 = bad proof) or just closes; it never says OK (0).
    assert.ok(verdict === null || verdict[0] !== 0, `${proof}: the stranger was accepted`);
    if (verdict !== null) assert.equal(verdict[0], 1, `${proof}: verdict ${verdict[0]}`);
    try {
      c.close();
    } catch { /* closed */ }
  }
  const b = await TcpTransport.create({ rank: 1, size: 2, store, token: TOKEN, timeoutMs: 8000 });
  await exchange(a, b);
  const ca = await pending;
  assert.equal(ca.peer, 1);
  await a.close();
  await b.close();
  await store.close();
});

Deno.test("tcp handshake: the legacy hello carrying the raw token is refused", async () => {
  const store = new MemoryStore();
  const a = await TcpTransport.create({ rank: 0, size: 2, store, token: TOKEN, timeoutMs: 1500 });
  const pending = a.channel(1);
  pending.catch(() => {});
  const tok = enc.encode(TOKEN);
  const v1 = new Uint8Array(24 + tok.length);
  const v = new DataView(v1.buffer);
  v.setUint32(0, 0x43485348, true);
  v.setUint16(4, 1, true);
  v.setUint16(6, tok.length, true);
  v.setUint32(12, 1, true);
  v.setUint32(16, 0, true);
  v.setUint32(20, 2, true);
  v1.set(tok, 24);
  const answer = await replay(a.port, v1, 1000);
  assert.ok(answer.length === 0 || answer[0] !== 0, "the legacy hello was accepted");
  await assert.rejects(pending, TransportError);
  await a.close();
  await store.close();
});

Deno.test("tcp handshake: a rank dialling an impostor learns nothing of it and fails with AuthError naming the address", async () => {
  const store = new MemoryStore();
  // Whatever it is sent, the impostor answers 64 bytes that look like a challenge.
  const fake = impostor(0, () => crypto.getRandomValues(new Uint8Array(64)));
  await store.set("addr/0", `127.0.0.1:${fake.port}`);
  const b = await TcpTransport.create({ rank: 1, size: 2, store, token: TOKEN, timeoutMs: 3000 });
  try {
    const t0 = performance.now();
    await assert.rejects(b.channel(0), (e: Error) => {
      assert.ok(e instanceof AuthError, String(e));
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${fake.port}`));
      return true;
    });
    assert.ok(performance.now() - t0 < 2500, "the rank waited for its timeout instead of failing fast");
    assert.ok(!containsBytes(fake.allFromClients(), enc.encode(TOKEN)), "the impostor received the token");
  } finally {
    await b.close();
    await fake.close();
    await store.close();
  }
});

Deno.test("tcp: a frame on a connection whose handshake never finished is not delivered", async () => {
  // A stranger skips the proof and sends a frame straight away: the acceptor reads it as the proof and
  // refuses the connection; nothing reaches rank 0's channel from rank 1.
  const store = new MemoryStore();
  const a = await TcpTransport.create({ rank: 0, size: 2, store, token: TOKEN, timeoutMs: 4000 });
  const pending = a.channel(1);
  const c = await Deno.connect({ hostname: "127.0.0.1", port: a.port });
  await c.write(strangerHello(1, 0, 2));
  await readN(c, 64);
  const frame = new Uint8Array(HEADER_BYTES + 3);
  encodeHeader(hdr(3), new DataView(frame.buffer));
  frame.set([6, 6, 6], HEADER_BYTES);
  await c.write(frame).catch(() => 0);
  c.close();
  const b = await TcpTransport.create({ rank: 1, size: 2, store, token: TOKEN, timeoutMs: 4000 });
  const [ca, cb] = await Promise.all([pending, b.channel(0)]);
  const got = new Uint8Array(3);
  await Promise.all([cb.send(hdr(3), new Uint8Array([1, 2, 3])), ca.recv(hdr(3), got)]);
  assert.deepEqual([...got], [1, 2, 3]);
  await a.close();
  await b.close();
  await store.close();
});
