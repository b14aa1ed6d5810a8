/**
 * @module
 * The TCP channel's libc fast path: the socket behind a Deno connection is found by its addresses,
 * nonblocking send/recv move bytes on it (0 when they would block, -1 at the peer's close), and the
 * polling loop carries both directions of a full-duplex exchange far larger than the socket buffers,
 * mixing its own calls with Deno's reads and writes, without losing, reordering or duplicating a
 * byte. Real loopback sockets.
 */

import assert from "node:assert/strict";
import { findSocketFd } from "../../transports/tcp/socket_fd.ts";
import { SocketPoller } from "../../transports/tcp/socket_poller.ts";

/** A connected loopback pair. */
async function pair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [a, b] = await Promise.all([l.accept(), Deno.connect({ hostname: "127.0.0.1", port: l.addr.port })]);
  l.close();
  return [a, b];
}

/** `n` bytes that differ from position to position (seeded). */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Writes all of `buf` through `p`. */
async function writeAll(p: SocketPoller, buf: Uint8Array): Promise<void> {
  for (let off = 0; off < buf.byteLength;) off += await p.write(buf.subarray(off));
}

/** Fills `buf` through `p`, reading at most `step` bytes a call (frames of a stream). */
async function readAll(p: SocketPoller, buf: Uint8Array, step: number): Promise<void> {
  for (let off = 0; off < buf.byteLength;) {
    const n = await p.read(buf.subarray(off, Math.min(buf.byteLength, off + step)));
    assert.notEqual(n, null, "peer closed early");
    off += n!;
  }
}

Deno.test("findSocketFd finds both ends of a loopback connection; tryRecv/trySend move bytes", async () => {
  const [a, b] = await pair();
  try {
    const fa = findSocketFd(a);
    const fb = findSocketFd(b);
    assert.ok(fa && fb, "FFI is allowed in tests: both sockets are found");
    assert.notEqual(fa.fd, fb.fd);
    const got = new Uint8Array(64);
    assert.equal(fb.tryRecv(got), 0, "nothing sent yet: would block");
    const sent = pattern(48, 7);
    assert.equal(fa.trySend(sent), 48);
    // The bytes are on loopback once send returns; one nonblocking call may still race the stack.
    let n = 0;
    while (n === 0) n = fb.tryRecv(got);
    assert.equal(n, 48);
    assert.deepEqual(got.subarray(0, 48), sent);
    // Deno's own read on the same socket sees the next bytes: the two mix.
    assert.equal(fa.trySend(sent.subarray(0, 8)), 8);
    const viaDeno = new Uint8Array(8);
    assert.equal(await b.read(viaDeno), 8);
    assert.deepEqual(viaDeno, sent.subarray(0, 8));
    a.close();
    n = 0;
    while (n === 0) n = fb.tryRecv(got);
    assert.equal(n, -1, "the peer closed");
  } finally {
    try {
      a.close();
    } catch { /* closed above */ }
    b.close();
  }
});

for (const [spinUs, yields] of [[100, false], [0, false], [300, true]] as const) {
  const how = yields ? ", yielding the core between idle polls" : "";
  Deno.test(`SocketPoller: 8 MiB both ways at once on one connection, spin ${spinUs} us${how}`, async () => {
    const [a, b] = await pair();
    try {
      const pa = new SocketPoller(findSocketFd(a)!, a, spinUs, yields);
      const pb = new SocketPoller(findSocketFd(b)!, b, spinUs, yields);
      const n = 8 << 20;
      const fromA = pattern(n, 1);
      const fromB = pattern(n, 2);
      const atB = new Uint8Array(n);
      const atA = new Uint8Array(n);
      await Promise.all([
        writeAll(pa, fromA),
        writeAll(pb, fromB),
        readAll(pb, atB, 100_003),
        readAll(pa, atA, 65_536),
      ]);
      assert.deepEqual(atB, fromA);
      assert.deepEqual(atA, fromB);
      if (spinUs > 0) {
        // A read still polled for at close ends as the peer's close would.
        const pending = pa.read(new Uint8Array(8));
        pa.close();
        assert.equal(await pending, null);
      }
    } finally {
      a.close();
      b.close();
    }
  });
}
