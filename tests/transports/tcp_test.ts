/**
 * @module
 * TCP transport unit tests in one process (the multi-process suite is conformance_test.ts): the
 * handshake refuses a wrong token with AuthError, and a stranger's random bytes are dropped without
 * disturbing the job.
 */

import assert from "node:assert/strict";
import { AuthError, DataCorruptionError, InvalidArgumentError, TransportError } from "../../errors.ts";
import { crc32c } from "../../transports/crc32c.ts";
import { TcpChannel } from "../../transports/tcp/channel.ts";
import { encodeHeader, HEADER_BYTES } from "../../transports/frame.ts";
import { MemoryStore } from "../../transports/store/mod.ts";
import { TcpTransport } from "../../transports/tcp/transport.ts";
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

Deno.test("CRC32C: known value, and resuming over pieces gives the whole", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  const bytes = new Uint8Array(10_000).map((_, i) => (i * 2654435761) >>> 24);
  assert.equal(crc32c(bytes.subarray(333), crc32c(bytes.subarray(0, 333))), crc32c(bytes));
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

Deno.test("checksums: a frame whose bytes changed on the way is a DataCorruptionError naming the peer", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port }),
    listener.accept(),
  ]);
  listener.close();
  const sender = new TcpChannel(client, 0, 1, true);
  const receiver = new TcpChannel(server, 1, 0, true);
  for (const size of [64, 100_000]) {
    const h = { group: 0, seq: 1, op: 1, dtype: 0, count: size, root: -1, chunk: 0, bytes: size };
    const data = new Uint8Array(size).map((_, i) => i & 0xff);
    const got = new Uint8Array(size);
    await Promise.all([sender.send(h, data), receiver.recv(h, got)]);
    assert.deepEqual(got, data);
  }
  // A frame written by hand with a wrong trailer, as if a bit flipped on the wire.
  const size = 64;
  const h = { group: 0, seq: 2, op: 1, dtype: 0, count: size, root: -1, chunk: 0, bytes: size };
  const frame = new Uint8Array(HEADER_BYTES + size + 4);
  encodeHeader(h, new DataView(frame.buffer));
  frame.fill(7, HEADER_BYTES, HEADER_BYTES + size);
  new DataView(frame.buffer).setUint32(HEADER_BYTES + size, 0xdeadbeef, true);
  await client.write(frame);
  await assert.rejects(
    receiver.recv(h, new Uint8Array(size)),
    (e: Error) => e instanceof DataCorruptionError && /rank 0/.test(e.message) && /CRC32C/.test(e.message),
  );
  sender.close();
  receiver.close();
});
