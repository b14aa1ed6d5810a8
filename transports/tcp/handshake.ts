/**
 * @module
 * The TCP connection handshake: both ranks prove they hold the job token without sending it, and the
 * accepting rank checks group, ranks and world size before any frame is exchanged. After it, frames
 * flow unchanged (channel.ts): the proof costs one more round trip per connection, never per message.
 *
 * ```
 * connector -> acceptor   hello: magic, version 2, 0, group, from, to, size (u32/u16 LE), nonce_c (32)
 * acceptor  -> connector  nonce_a (32), HMAC(token, "choir/tcp/acceptor", hello, nonce_a)
 * connector -> acceptor   HMAC(token, "choir/tcp/connector", hello, nonce_a)    (after checking the above)
 * acceptor  -> connector  verdict: 0 ok, 1 bad proof, 2 wrong group/ranks/size, 3 crossed (both ranks
 *                         dialed at once; the acceptor keeps its own dial, and the connector waits for it)
 * ```
 * Each proof covers the other side's fresh nonce, so a recorded one is worthless later; the labels
 * differ, so one side's proof cannot be reflected back as the other's.
 */

import { readExact, writeAll } from "../conn_io.ts";
import { AuthError, TransportError } from "../../errors.ts";
import { hmac, nonce, PROOF_BYTES } from "../proof.ts";
import { checkToken, constantTimeEqual } from "../token.ts";

const HELLO_MAGIC = 0x43485348; // "CHSH"
const VERSION = 2;
const HELLO_FIXED = 24;
/** Bytes of a hello: the fixed fields and the connector's nonce. */
const HELLO_BYTES = HELLO_FIXED + PROOF_BYTES;
const ACCEPTOR = "choir/tcp/acceptor";
const CONNECTOR = "choir/tcp/connector";

/**
 * Outcome codes the acceptor answers with, once the proofs are checked. CROSSED: both ranks dialed each
 * other at once, and the acceptor keeps its own dial (the higher rank's), so the connector waits for
 * that one instead.
 */
const OK = 0, BAD_PROOF = 1, BAD_PEER = 2, CROSSED = 3;

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

/**
 * Connector side: sends the hello, checks the acceptor's proof, proves itself and waits for the verdict:
 * `ok`, or `crossed` when the peer is dialing this rank at the same time and keeps its own connection.
 * Throws AuthError (naming `addr`) when the acceptor cannot prove it holds the token or refuses ours,
 * before anything derived from the token was sent in the first case.
 */
export async function sendHello(
  conn: Deno.Conn,
  info: HelloInfo,
  token: string,
  addr: string,
): Promise<"ok" | "crossed"> {
  const ctx = { rank: info.from, peer: info.to, op: "connect" };
  checkToken(token, ctx);
  const hello = new Uint8Array(HELLO_BYTES);
  const v = new DataView(hello.buffer);
  v.setUint32(0, HELLO_MAGIC, true);
  v.setUint16(4, VERSION, true);
  v.setUint32(8, info.group, true);
  v.setUint32(12, info.from, true);
  v.setUint32(16, info.to, true);
  v.setUint32(20, info.size, true);
  hello.set(nonce(), HELLO_FIXED);
  await writeAll(conn, hello);
  const challenge = new Uint8Array(2 * PROOF_BYTES);
  if (!(await readExact(conn, challenge))) {
    throw new TransportError(`rank ${info.to} at ${addr} closed the connection during the handshake`, ctx);
  }
  const theirNonce = challenge.subarray(0, PROOF_BYTES);
  const expected = await hmac(token, ACCEPTOR, hello, theirNonce);
  if (!constantTimeEqual(challenge.subarray(PROOF_BYTES), expected)) {
    throw new AuthError(
      `whatever answers at ${addr} (published as rank ${info.to}) cannot prove it holds the job token: ` +
        `another job's rank, or an impostor on that port; nothing secret was sent to it`,
      ctx,
    );
  }
  await writeAll(conn, await hmac(token, CONNECTOR, hello, theirNonce));
  const reply = new Uint8Array(1);
  if (!(await readExact(conn, reply))) {
    throw new TransportError(`rank ${info.to} at ${addr} closed the connection during the handshake`, ctx);
  }
  if (reply[0] === BAD_PROOF) {
    throw new AuthError(`rank ${info.to} at ${addr} refused the connection: our proof of the job token`, ctx);
  }
  if (reply[0] === CROSSED) return "crossed";
  if (reply[0] !== OK) {
    throw new TransportError(
      `rank ${info.to} at ${addr} refused the connection: group, rank or world size differ ` +
        `(we sent group ${info.group}, rank ${info.from} -> ${info.to}, size ${info.size})`,
      ctx,
    );
  }
  return "ok";
}

/**
 * Acceptor side: reads a hello, proves the token over the connector's nonce, and checks the connector's
 * proof over its own. Returns the connecting rank, or null (after answering and closing) when the peer
 * is a stranger, cannot prove the token, or names the wrong group or ranks. A hello whose proofs and
 * fields pass is then put to `admit` (synchronously, before the answer is written): false answers
 * CROSSED (the acceptor keeps a dial of its own) and returns null.
 */
export async function acceptHello(
  conn: Deno.Conn,
  expect: { group: number; rank: number; size: number },
  token: string,
  admit: (from: number) => boolean = () => true,
): Promise<number | null> {
  checkToken(token, { rank: expect.rank, op: "accept" });
  const hello = new Uint8Array(HELLO_BYTES);
  if (!(await readExact(conn, hello))) return null;
  const v = new DataView(hello.buffer);
  if (v.getUint32(0, true) !== HELLO_MAGIC || v.getUint16(4, true) !== VERSION) return null;
  const mine = nonce();
  const [proof, expected] = await Promise.all([
    hmac(token, ACCEPTOR, hello, mine),
    hmac(token, CONNECTOR, hello, mine),
  ]);
  const challenge = new Uint8Array(2 * PROOF_BYTES);
  challenge.set(mine);
  challenge.set(proof, PROOF_BYTES);
  await writeAll(conn, challenge);
  const theirs = new Uint8Array(PROOF_BYTES);
  if (!(await readExact(conn, theirs))) return null;
  const from = v.getUint32(12, true);
  let verdict = OK;
  if (!constantTimeEqual(theirs, expected)) verdict = BAD_PROOF;
  else if (
    v.getUint32(8, true) !== expect.group || v.getUint32(16, true) !== expect.rank ||
    v.getUint32(20, true) !== expect.size || from >= expect.size || from === expect.rank
  ) verdict = BAD_PEER;
  else if (!admit(from)) verdict = CROSSED;
  await writeAll(conn, new Uint8Array([verdict]));
  return verdict === OK ? from : null;
}
