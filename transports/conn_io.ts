/**
 * @module
 * Whole reads and writes on a connection (a handshake's or a heartbeat's fixed-size frames): Deno's
 * `read` and `write` may move fewer bytes than asked.
 */

/** Fills `buf` from `conn`; false when the peer closed first. */
export async function readExact(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  let off = 0;
  while (off < buf.byteLength) {
    const n = await conn.read(buf.subarray(off));
    if (n === null) return false;
    off += n;
  }
  return true;
}

/** Writes all of `buf` to `conn`. */
export async function writeAll(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.byteLength) off += await conn.write(buf.subarray(off));
}
