/**
 * @module
 * TCP transport unit tests in one process (the multi-process suite is conformance_test.ts): the
 * handshake refuses a wrong token with AuthError, and a stranger's random bytes are dropped without
 * disturbing the job.
 */

import assert from "node:assert/strict";
import { AuthError, InvalidArgumentError, TransportError } from "../../errors.ts";
import { MemoryStore } from "../../transports/store/mod.ts";
import { TcpTransport } from "../../transports/tcp.ts";
import { interfaceAddress } from "../../collectives/init.ts";

const hdr = (bytes: number) => ({ group: 0, seq: 0, op: 1, dtype: 0, count: 1, root: -1, chunk: 0, bytes });

Deno.test("tcp handshake: a wrong token is refused with AuthError", async () => {
  const store = new MemoryStore();
  const a = await TcpTransport.create({ rank: 0, size: 2, store, token: "right", timeoutMs: 1500 });
  const b = await TcpTransport.create({ rank: 1, size: 2, store, token: "wrong", timeoutMs: 1500 });
  await assert.rejects(b.channel(0), AuthError);
  // The acceptor never gets a channel: a typed error at its timeout, not a hang.
  await assert.rejects(a.channel(1), TransportError);
  await a.close();
  await b.close();
  await store.close();
});

Deno.test("tcp: random bytes from a stranger are dropped; the job still works", async () => {
  const store = new MemoryStore();
  const a = await TcpTransport.create({ rank: 0, size: 2, store, token: "t", timeoutMs: 5000 });
  for (let i = 0; i < 20; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: a.port });
    await c.write(crypto.getRandomValues(new Uint8Array(1 + i * 37))).catch(() => 0);
    c.close();
  }
  const b = await TcpTransport.create({ rank: 1, size: 2, store, token: "t", timeoutMs: 5000 });
  const [ca, cb] = await Promise.all([a.channel(1), b.channel(0)]);
  const msg = new Uint8Array([1, 2, 3, 4, 5]);
  const got = new Uint8Array(5);
  await Promise.all([cb.send(hdr(5), msg), ca.recv(hdr(5), got)]);
  assert.deepEqual(got, msg);
  await a.close();
  await b.close();
  await store.close();
});

Deno.test("CHOIR_SOCKET_IFNAME: the listeners bind to that interface's address; an unknown one is named", () => {
  assert.equal(interfaceAddress("lo"), "127.0.0.1");
  assert.throws(
    () => interfaceAddress("nope0"),
    (e: Error) => e instanceof InvalidArgumentError && /nope0.*lo/.test(e.message),
  );
});
