/**
 * @module
 * The heartbeat thread (a `node:worker_threads` Worker, so it never keeps a finished program alive).
 * It watches this rank's ring neighbours over links of its own, independent of the transport and of
 * the training thread: every link carries a small frame each interval both ways. A link that closes
 * without a goodbye, or stays silent past the timeout, makes its peer lost; the thread tells the
 * training thread and passes the news on to its other neighbour, so it goes round the ring. The cause
 * of a rank whose group broke (a mismatch, a timeout) goes round the same way, so ranks that wait on
 * other peers, not reading the failing rank's links, learn it too.
 * A busy training thread never delays it, and it never touches the training thread's sockets.
 */

import { parentPort, workerData } from "node:worker_threads";
import { MAX_CAUSE_BYTES } from "../abort_cause.ts";
import { readExact, writeAll } from "../conn_io.ts";
import { acceptHello, sendHello } from "../tcp/handshake.ts";
import {
  FRAME_BYTES,
  type FromHeartbeat,
  HEARTBEAT_GROUP,
  type HeartbeatInit,
  Kind,
  LostWhy,
  type ToHeartbeat,
} from "./protocol.ts";

// Given at spawn, or later by an `init` message (a thread spawned ahead of need, see `spawnHeartbeatThread`).
let init = workerData as HeartbeatInit;
const port = parentPort!;

/** One link to a neighbour: the time a frame last came, and whether it said goodbye. */
interface Link {
  peer: number;
  conn: Deno.Conn;
  lastSeen: number;
  bye: boolean;
  closed: boolean;
  /** The write in progress: frames go out whole and in order. */
  writing: Promise<void>;
}

const links = new Set<Link>();
const lost = new Set<number>();
/** Ranks whose cause went round already (each is passed on once). */
const causes = new Set<number>();
let stopping = false;

function tell(msg: FromHeartbeat): void {
  port.postMessage(msg);
}

function frame(kind: Kind, rank = 0, why = 0, body?: Uint8Array): Uint8Array {
  const f = new Uint8Array(FRAME_BYTES + (body?.byteLength ?? 0));
  const v = new DataView(f.buffer);
  f[0] = kind;
  f[1] = why;
  v.setUint16(2, body?.byteLength ?? 0, true);
  v.setUint32(4, rank, true);
  if (body) f.set(body, FRAME_BYTES);
  return f;
}

/** Rank `from`'s cause: to the training thread once, and to every other neighbour. */
function passCause(from: number, bytes: Uint8Array, source?: Link): Promise<unknown> {
  if (causes.has(from)) return Promise.resolve();
  causes.add(from);
  if (from !== init.rank) tell({ type: "cause", bytes });
  const f = frame(Kind.Cause, from, 0, bytes);
  return Promise.all([...links].filter((l) => l !== source).map((l) => send(l, f)));
}

function send(link: Link, f: Uint8Array): Promise<void> {
  return link.writing = link.writing.then(async () => {
    if (link.closed) return;
    try {
      await writeAll(link.conn, f);
    } catch {
      closed(link);
    }
  });
}

/** Rank `peer` is lost: tell the training thread once, and every other neighbour (gossip). */
function declareLost(peer: number, why: LostWhy, via: number, from?: Link): void {
  if (lost.has(peer) || stopping) return;
  lost.add(peer);
  tell({ type: "lost", peer, why, via });
  for (const l of links) {
    if (l !== from && l.peer !== peer) void send(l, frame(Kind.Lost, peer, why));
  }
}

/** A link ended: without a goodbye its peer is lost, after a grace for frames still in flight. */
function closed(link: Link): void {
  if (link.closed) return;
  link.closed = true;
  try {
    link.conn.close();
  } catch { /* closed already */ }
  links.delete(link);
  if (link.bye || stopping) return;
  // The grace lets a training thread finish reading what the peer sent before it exited (a program
  // that ends without destroy() says no goodbye) before its group breaks.
  setTimeout(() => declareLost(link.peer, LostWhy.Closed, init.rank), init.graceMs);
}

async function readLoop(link: Link): Promise<void> {
  const buf = new Uint8Array(FRAME_BYTES);
  const v = new DataView(buf.buffer);
  try {
    for (;;) {
      if (!(await readExact(link.conn, buf))) return closed(link);
      link.lastSeen = performance.now();
      const kind = buf[0];
      const len = v.getUint16(2, true);
      if (kind === Kind.Cause) {
        if (len > MAX_CAUSE_BYTES) return closed(link); // not one of ours
        const body = new Uint8Array(len);
        if (!(await readExact(link.conn, body))) return closed(link);
        const from = v.getUint32(4, true);
        if (from < init.size) void passCause(from, body, link);
        continue;
      }
      if (kind === Kind.Bye) {
        link.bye = true;
        return closed(link);
      }
      if (kind === Kind.Lost) {
        const peer = new DataView(buf.buffer).getUint32(4, true);
        if (peer < init.size && peer !== init.rank) declareLost(peer, buf[1] as LostWhy, link.peer, link);
      }
    }
  } catch {
    closed(link);
  }
}

function adopt(peer: number, conn: Deno.Conn): void {
  if (stopping) {
    conn.close();
    return;
  }
  const link: Link = {
    peer,
    conn,
    lastSeen: performance.now(),
    bye: false,
    closed: false,
    writing: Promise.resolve(),
  };
  links.add(link);
  void readLoop(link);
}

/** Accepts the links neighbours dial; each must prove the job token first (the transport's hello). */
async function acceptAll(listener: Deno.TcpListener): Promise<void> {
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch {
      if (stopping) return;
      await new Promise((r) => setTimeout(r, 100)); // e.g. out of descriptors: retry, never give up
      continue;
    }
    const timer = setTimeout(() => {
      try {
        conn.close();
      } catch { /* done */ }
    }, 2000);
    acceptHello(conn, { group: HEARTBEAT_GROUP, rank: init.rank, size: init.size }, init.token)
      .then((from) => from === null ? conn.close() : adopt(from, conn))
      .catch(() => {
        try {
          conn.close();
        } catch { /* done */ }
      })
      .finally(() => clearTimeout(timer));
  }
}

async function dial(peer: number, hostname: string, p: number): Promise<void> {
  try {
    const conn = await Deno.connect({ hostname, port: p });
    const info = { group: HEARTBEAT_GROUP, from: init.rank, to: peer, size: init.size };
    await sendHello(conn, info, init.token, `${hostname}:${p}`);
    adopt(peer, conn);
  } catch {
    // Not reachable at all (it may have finished and left already): the collectives themselves find
    // a peer that is gone; only a link that once stood and then broke makes a peer lost here.
  }
}

function tick(): void {
  const now = performance.now();
  for (const l of [...links]) {
    if (now - l.lastSeen > init.timeoutMs) {
      l.bye = true; // no grace: silence is the verdict
      closed(l);
      declareLost(l.peer, LostWhy.Silent, init.rank);
    } else void send(l, frame(Kind.Beat));
  }
}

async function stop(): Promise<void> {
  stopping = true;
  await Promise.all([...links].map((l) => send(l, frame(Kind.Bye))));
  for (const l of links) {
    l.closed = true;
    try {
      l.conn.close();
    } catch { /* done */ }
  }
  links.clear();
  tell({ type: "stopped" });
}

/** Listens, then serves until told to stop; without a listener (no permission) it tells why and ends. */
function main(): void {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: init.bind, port: 0 });
  } catch (e) {
    tell({ type: "error", message: e instanceof Error ? e.message : String(e) });
    port.close();
    return;
  }
  void acceptAll(listener);
  const ticker = setInterval(tick, init.intervalMs);
  port.on("message", (m: ToHeartbeat) => {
    if (m.type === "dial") void dial(m.peer, m.hostname, m.port);
    else if (m.type === "cause") void passCause(init.rank, m.bytes).then(() => tell({ type: "told" }));
    else if (m.type === "stop") {
      clearInterval(ticker);
      try {
        listener.close();
      } catch { /* done */ }
      void stop();
    }
  });
  tell({ type: "ready", port: (listener.addr as Deno.NetAddr).port });
}

if (init) main();
else {
  port.once("message", (m: ToHeartbeat) => {
    if (m.type !== "init") return port.close();
    init = m.init;
    main();
  });
}
