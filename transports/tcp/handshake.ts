/**
 * @module
 * The TCP connection handshake: the connecting rank proves it holds the job token and says who it
 * is; the accepting rank checks token, group, ranks and world size before any frame is exchanged.
 */

import { AuthError, TransportError } from "../../errors.ts";
import { constantTimeEqual } from "../token.ts";

const HELLO_MAGIC = 0x43485348; // "CHSH"
const VERSION = 1;
const HELLO_FIXED = 24;
const MAX_TOKEN_BYTES = 4096;

/**
 * Outcome codes the acceptor answers with. CROSSED: both ranks dialed each other at once, and the
 * acceptor keeps its own dial (the higher rank's), so the connector waits for that one instead.
 */
const OK = 0, BAD_TOKEN = 1, BAD_PEER = 2, CROSSED = 3;

/** Who is connecting to whom, within which group. */
export interface HelloInfo {
  /** Group id (hash of the group's name). */
  group: number;
  /** The connecting rank. */
  from: number;
  /** The rank being connected to. */
  to: number;
  /** World size the connector believes in. */
  size: number;
}

async function readExact(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  let off = 0;
  while (off < buf.byteLength) {
    const n = await conn.read(buf.subarray(off));
    if (n === null) return false;
    off += n;
  }
  return true;
}

async function writeAll(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.byteLength) off += await conn.write(buf.subarray(off));
}

/**
 * Connector side: sends the hello and waits for the verdict: `ok`, or `crossed` when the peer is dialing
 * this rank at the same time and keeps its own connection. Throws AuthError when refused.
 */
export async function sendHello(conn: Deno.Conn, info: HelloInfo, token: string): Promise<"ok" | "crossed"> {
  const tok = new TextEncoder().encode(token);
  const msg = new Uint8Array(HELLO_FIXED + tok.byteLength);
  const v = new DataView(msg.buffer);
  v.setUint32(0, HELLO_MAGIC, true);
  v.setUint16(4, VERSION, true);
  v.setUint16(6, tok.byteLength, true);
  v.setUint32(8, info.group, true);
  v.setUint32(12, info.from, true);
  v.setUint32(16, info.to, true);
  v.setUint32(20, info.size, true);
  msg.set(tok, HELLO_FIXED);
  await writeAll(conn, msg);
  const reply = new Uint8Array(1);
  const ctx = { rank: info.from, peer: info.to, op: "connect" };
  if (!(await readExact(conn, reply))) {
    throw new TransportError(`rank ${info.to} closed the connection during the handshake`, ctx);
  }
  if (reply[0] === BAD_TOKEN) {
    throw new AuthError(`rank ${info.to} refused the connection: wrong job token`, ctx);
  }
  if (reply[0] === CROSSED) return "crossed";
  if (reply[0] !== OK) {
    throw new TransportError(
      `rank ${info.to} refused the connection: group, rank or world size differ ` +
        `(we sent group ${info.group}, rank ${info.from} -> ${info.to}, size ${info.size})`,
      ctx,
    );
  }
  return "ok";
}

/**
 * Acceptor side: reads and checks a hello. Returns the connecting rank, or null (after answering
 * and closing) when the peer is a stranger, lacks the token, or names the wrong group or ranks. A
 * well-formed hello is then put to `admit` (synchronously, before the answer is written): false
 * answers CROSSED (the acceptor keeps a dial of its own) and returns null.
 */
export async function acceptHello(
  conn: Deno.Conn,
  expect: { group: number; rank: number; size: number },
  token: string,
  admit: (from: number) => boolean = () => true,
): Promise<number | null> {
  const head = new Uint8Array(HELLO_FIXED);
  if (!(await readExact(conn, head))) return null;
  const v = new DataView(head.buffer);
  if (v.getUint32(0, true) !== HELLO_MAGIC || v.getUint16(4, true) !== VERSION) return null;
  const tokLen = v.getUint16(6, true);
  if (tokLen > MAX_TOKEN_BYTES) return null;
  const tok = new Uint8Array(tokLen);
  if (!(await readExact(conn, tok))) return null;
  const from = v.getUint32(12, true);
  let verdict = OK;
  if (!constantTimeEqual(tok, new TextEncoder().encode(token))) verdict = BAD_TOKEN;
  else if (
    v.getUint32(8, true) !== expect.group || v.getUint32(16, true) !== expect.rank ||
    v.getUint32(20, true) !== expect.size || from >= expect.size || from === expect.rank
  ) verdict = BAD_PEER;
  else if (!admit(from)) verdict = CROSSED;
  await writeAll(conn, new Uint8Array([verdict]));
  return verdict === OK ? from : null;
}
