/**
 * @module
 * Test helper: TCP programs that sit where a choir peer or store is expected and keep every byte they
 * receive: an impostor that answers with bytes of its own, and a forwarding proxy that records both
 * directions of each connection (to replay them later). Each stops with `close()`.
 */

/** Every byte received on one accepted connection. */
export interface Recorded {
  /** Bytes from the connecting side, in order. */
  fromClient: Uint8Array;
  /** Bytes from the server side (proxy only), in order. */
  fromServer: Uint8Array;
}

/** A listener under test control. */
export interface WireTap {
  /** The port it listens on (127.0.0.1). */
  readonly port: number;
  /** What each connection received so far. */
  readonly connections: Recorded[];
  /** Every byte any connection received from clients, concatenated. */
  allFromClients(): Uint8Array;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function tap(listener: Deno.Listener, serve: (conn: Deno.Conn, rec: Recorded) => Promise<void>): WireTap {
  const connections: Recorded[] = [];
  const open = new Set<Deno.Conn>();
  const running: Promise<void>[] = [];
  const loop = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      const rec: Recorded = { fromClient: new Uint8Array(0), fromServer: new Uint8Array(0) };
      connections.push(rec);
      open.add(conn);
      running.push(
        serve(conn, rec).catch(() => {}).finally(() => {
          open.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        }),
      );
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    connections,
    allFromClients: () =>
      connections.reduce<Uint8Array>((acc, c) => concat(acc, c.fromClient), new Uint8Array(0)),
    close: async () => {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of open) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await loop;
      await Promise.allSettled(running);
    },
  };
}

/**
 * An impostor on `port` (0: any): records what clients send and answers each chunk it receives with
 * `answer(chunk)` (nothing when it returns undefined). Binding first is the attack under test.
 */
export function impostor(port: number, answer: (chunk: Uint8Array) => Uint8Array | undefined): WireTap {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  return tap(listener, async (conn, rec) => {
    const buf = new Uint8Array(64 << 10);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      const chunk = buf.slice(0, n);
      rec.fromClient = concat(rec.fromClient, chunk);
      const reply = answer(chunk);
      if (reply !== undefined) await conn.write(reply);
    }
  });
}

/** A proxy on a free port forwarding every connection to `target`, recording both directions. */
export function recordingProxy(target: { hostname: string; port: number }): WireTap {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return tap(listener, async (conn, rec) => {
    const up = await Deno.connect(target);
    const pump = async (from: Deno.Conn, to: Deno.Conn, toServer: boolean) => {
      const buf = new Uint8Array(64 << 10);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          const chunk = buf.slice(0, n);
          if (toServer) rec.fromClient = concat(rec.fromClient, chunk);
          else rec.fromServer = concat(rec.fromServer, chunk);
          for (let off = 0; off < n;) off += await to.write(chunk.subarray(off));
        }
      } catch { /* either side closed */ }
      try {
        await to.closeWrite();
      } catch { /* closed */ }
    };
    await Promise.all([pump(conn, up, true), pump(up, conn, false)]);
    try {
      up.close();
    } catch { /* closed */ }
  });
}

/** Whether `needle` occurs in `hay` (bytes). */
export function containsBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0) return true;
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** Sends `bytes` on a fresh connection to `port` and returns all it gets back before the close or `ms`. */
export async function replay(port: number, bytes: Uint8Array, ms = 2000): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let got: Uint8Array = new Uint8Array(0);
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, ms);
  try {
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    const buf = new Uint8Array(64 << 10);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      got = concat(got, buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
  return got;
}
