/**
 * @module
 * Tests of transports/http/fd_send.ts, the libc `send` path under the store's writes: the socket of an
 * accepted and of a connected Deno connection is found, its bytes arrive in order with Deno's writes
 * mixed in, a write the socket cannot take whole is finished by Deno's write, and a closed peer or a
 * closed sender sends nothing (Deno's write then reports the failure).
 */

import assert from "node:assert/strict";
import { fdSender } from "../../transports/http/fd_send.ts";

/** A connected pair over loopback: the client's end and the server's accepted end. */
async function pair(): Promise<{ client: Deno.TcpConn; server: Deno.TcpConn; close: () => void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  listener.close();
  return {
    client,
    server,
    close: () => {
      for (const c of [client, server]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const k = await conn.read(out.subarray(got));
    if (k === null) throw new Error(`the stream ended after ${got} of ${n} bytes`);
    got += k;
  }
  return out;
}

const linuxWithFfi = Deno.build.os === "linux";

Deno.test({
  name: "fdSender: finds accepted and connected sockets; bytes arrive in order with Deno writes mixed in",
  ignore: !linuxWithFfi,
  fn: async () => {
    const p = await pair();
    try {
      const accepted = fdSender(p.server, true);
      const connected = fdSender(p.client);
      assert.ok(accepted && connected);
      assert.ok(accepted.fd >= 0, "an accepted socket is looked up at once");
      assert.equal(connected.trySend(new Uint8Array([1, 2])), 2); // looked up at the first write
      assert.ok(connected.fd >= 0 && connected.fd !== accepted.fd);
      await p.client.write(new Uint8Array([3]));
      assert.equal(connected.trySend(new Uint8Array([4, 5])), 2);
      assert.deepEqual(await readExactly(p.server, 5), new Uint8Array([1, 2, 3, 4, 5]));
      assert.equal(accepted.trySend(new TextEncoder().encode("back")), 4);
      assert.equal(new TextDecoder().decode(await readExactly(p.client, 4)), "back");
    } finally {
      p.close();
    }
  },
});

Deno.test({
  name: "fdSender: what a full socket does not take is finished by Deno's write, in order",
  ignore: !linuxWithFfi,
  fn: async () => {
    const p = await pair();
    try {
      const s = fdSender(p.server, true);
      assert.ok(s && s.fd >= 0);
      // Far more than the socket buffers hold while the peer reads nothing.
      const big = new Uint8Array(32 << 20);
      for (let i = 0; i < big.length; i += 4096) big[i] = (i >> 12) & 255;
      const sent = s.trySend(big);
      assert.ok(sent > 0 && sent < big.length, `a partial send, got ${sent}`);
      // Once the buffer is full, a send takes nothing (EAGAIN is 0, not an error).
      assert.equal(s.trySend(big.subarray(sent)), 0);
      const rest = (async () => {
        for (let off = sent; off < big.length;) off += await p.server.write(big.subarray(off));
      })();
      const got = await readExactly(p.client, big.length);
      await rest;
      assert.ok(got.every((v, i) => v === big[i]), "the bytes arrive whole and in order");
    } finally {
      p.close();
    }
  },
});

Deno.test({
  name: "fdSender: a closed peer or a closed sender sends nothing; Deno's write reports the failure",
  ignore: !linuxWithFfi,
  fn: async () => {
    const p = await pair();
    const s = fdSender(p.server, true);
    assert.ok(s && s.fd >= 0);
    p.client.close();
    // The first send after the peer closed may still be taken (the reset comes back with it).
    s.trySend(new Uint8Array(16));
    for (let i = 0; i < 100 && s.trySend(new Uint8Array(16)) > 0; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(s.trySend(new Uint8Array(16)), 0, "EPIPE/ECONNRESET read as nothing sent, no signal");
    await assert.rejects(async () => {
      for (let i = 0; i < 100; i++) await p.server.write(new Uint8Array(16));
    });
    s.close();
    assert.equal(s.trySend(new Uint8Array(16)), 0, "never again after close()");
    try {
      p.server.close();
    } catch { /* closed */ }
  },
});

Deno.test({
  name: "fdSender: nothing for a connection that is not IPv4 TCP",
  ignore: !linuxWithFfi,
  fn: async () => {
    const path = await Deno.makeTempFile({ suffix: ".sock" });
    await Deno.remove(path);
    const listener = Deno.listen({ transport: "unix", path });
    try {
      const [client, server] = await Promise.all([
        Deno.connect({ transport: "unix", path }),
        listener.accept(),
      ]);
      assert.equal(fdSender(client), null);
      assert.equal(fdSender(server, true), null);
      client.close();
      server.close();
    } finally {
      listener.close();
      await Deno.remove(path).catch(() => {});
    }
  },
});
