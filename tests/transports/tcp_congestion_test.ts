/**
 * @module
 * The TCP fast path's same-host sockets run Reno congestion control (transports/tcp/congestion.ts):
 * both ends of a loopback connection found by `findSocketFd` report "reno" through `getsockopt`, and a
 * connection to another host is left as the system set it. Real loopback sockets.
 */

import assert from "node:assert/strict";
import { findSocketFd } from "../../transports/tcp/socket_fd.ts";
import { useSameHostCongestion } from "../../transports/tcp/congestion.ts";
import { socketLibc } from "../../transports/socket_lookup.ts";

const libc = Deno.dlopen("libc.so.6", {
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
});

/** The congestion control algorithm of socket `fd`, as the kernel names it. */
function congestionOf(fd: number): string {
  const name = new Uint8Array(16);
  const len = new Uint32Array([name.byteLength]);
  assert.equal(libc.symbols.getsockopt(fd, 6, 13, name, new Uint8Array(len.buffer)), 0);
  return new TextDecoder().decode(name.subarray(0, name.indexOf(0) < 0 ? len[0] : name.indexOf(0)));
}

Deno.test("findSocketFd switches both ends of a loopback connection to Reno", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [a, b] = await Promise.all([l.accept(), Deno.connect({ hostname: "127.0.0.1", port: l.addr.port })]);
  l.close();
  try {
    const fa = findSocketFd(a);
    const fb = findSocketFd(b);
    assert.ok(fa && fb, "FFI is allowed in tests: both sockets are found");
    assert.equal(congestionOf(fa.fd), "reno");
    assert.equal(congestionOf(fb.fd), "reno");
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("a connection between two different hosts keeps the system's congestion control", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [a, b] = await Promise.all([l.accept(), Deno.connect({ hostname: "127.0.0.1", port: l.addr.port })]);
  l.close();
  try {
    const fa = findSocketFd(a)!;
    const before = congestionOf(fa.fd);
    // Addresses of two other hosts: nothing is set, whatever the socket.
    const set = useSameHostCongestion(socketLibc()!, fa.fd, { a: [10, 0, 0, 1], port: 1 }, {
      a: [10, 0, 0, 2],
      port: 2,
    });
    assert.equal(set, false);
    assert.equal(congestionOf(fa.fd), before);
  } finally {
    a.close();
    b.close();
  }
});

globalThis.addEventListener("unload", () => libc.close());
