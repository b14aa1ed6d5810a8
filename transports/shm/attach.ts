/**
 * @module
 * How the ranks of a group come to share one segment: rank 0 creates it under a fresh random name and
 * publishes the name in the store; the others open it and check the token; each takes its rank's owner
 * slot (a second process claiming a rank is refused here); the last to arrive unlinks the name. Before
 * the first segment of a process, the segments no process holds any more are swept (sweep.ts).
 */

import { AuthError, RendezvousError, TransportError } from "../../errors.ts";
import type { Store } from "../store/store.ts";
import { constantTimeEqual } from "../token.ts";
import { DIGEST_BYTES, Layout, LAYOUT_VERSION, SEGMENT_MAGIC, STATE_ALIVE } from "./layout.ts";
import type { Libc } from "./libc.ts";
import { jobTag, Segment } from "./segment.ts";
import { sweepAtStartup } from "./sweep.ts";

/** What attaching needs to know. */
export interface AttachOptions {
  /** This rank. */
  rank: number;
  /** Number of ranks. */
  size: number;
  /** The store where rank 0 publishes the segment's name (it holds the token, so strangers cannot read it). */
  store: Store;
  /** The job token; its digest in the segment header turns away ranks of another job. */
  token: string;
  /** How long to wait for rank 0 to publish, in ms. */
  timeoutMs: number;
  /** Group id (part of the name and the store key). */
  group: number;
  /** A recognisable part of the segment's name. */
  jobId?: string;
  /** Ring size in bytes (rank 0's choice wins). */
  ringBytes: number;
  /** Arena size in bytes (rank 0's choice wins). */
  arenaBytes: number;
}

/** A mapped, verified segment this rank has arrived in. */
export interface Attached {
  /** The segment. */
  segment: Segment;
  /** Its layout. */
  layout: Layout;
}

interface Published {
  name: string;
  bytes: number;
  ringBytes: number;
  arenaBytes: number;
  size: number;
  nonce: string;
  version: number;
}

const enc = new TextEncoder();

/** Attaches this rank to its group's segment (creating it on rank 0) and counts its arrival. */
export async function attach(lib: Libc, o: AttachOptions): Promise<Attached> {
  sweepAtStartup(lib);
  const att = o.rank === 0 ? await create(lib, o) : await open(lib, o);
  try {
    arrive(att, o.rank, Deno.pid);
  } catch (e) {
    att.segment.unmap();
    throw e;
  }
  return att;
}

/** The store key under which rank 0 publishes the segment record of `group`. */
function segmentKey(group: number): string {
  return `shm/g${group}/segment`;
}

async function create(lib: Libc, o: AttachOptions): Promise<Attached> {
  const layout = new Layout(o.size, o.ringBytes, o.arenaBytes);
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const id = hex(await sha256(`name\0${o.token}\0${o.group}\0${nonce}`)).slice(0, 16);
  const name = `/choir-${await jobTag(o.jobId)}g${o.group}-${id}`;
  // Rank 0's owner slot is taken as the segment is made: a sweep never takes it for abandoned.
  const segment = Segment.create(lib, name, layout.totalBytes, { rank: o.rank }, 0);
  try {
    const dv = new DataView(segment.buffer);
    dv.setUint32(layout.magic, SEGMENT_MAGIC, true);
    dv.setUint32(layout.version, LAYOUT_VERSION, true);
    dv.setUint32(layout.sizeWord, o.size, true);
    dv.setUint32(layout.ringWord, o.ringBytes, true);
    dv.setUint32(layout.groupWord, o.group, true);
    dv.setUint32(layout.arenaWord, layout.arenaBytes, true);
    new Uint8Array(segment.buffer, layout.digest, DIGEST_BYTES).set(await authDigest(o.token, nonce));
    const info: Published = {
      name,
      bytes: layout.totalBytes,
      ringBytes: o.ringBytes,
      arenaBytes: layout.arenaBytes,
      size: o.size,
      nonce,
      version: LAYOUT_VERSION,
    };
    // Only one rank 0 may publish: a second process started as rank 0 finds the record taken.
    const record = JSON.stringify(info);
    const held = new TextDecoder().decode(await o.store.compareSet(segmentKey(o.group), "", record));
    if (held !== record) {
      throw new RendezvousError(
        `rank 0 joined twice: another process published group ${o.group}'s shared segment (${
          parse(held)?.name ?? "?"
        }) before this one (pid ${Deno.pid})`,
        { rank: 0, op: "shm.attach" },
      );
    }
  } catch (e) {
    segment.unlink();
    segment.unmap();
    throw e;
  }
  return { segment, layout };
}

async function open(lib: Libc, o: AttachOptions): Promise<Attached> {
  const ctx = { rank: o.rank, op: "shm.attach" };
  await o.store.wait([segmentKey(o.group)], o.timeoutMs);
  const info = parse(new TextDecoder().decode(await o.store.get(segmentKey(o.group))));
  if (!info) throw new TransportError("rank 0 published a shared segment record this rank cannot read", ctx);
  if (info.version !== LAYOUT_VERSION) {
    throw new TransportError(`rank 0 uses segment layout ${info.version}, this rank ${LAYOUT_VERSION}`, ctx);
  }
  if (info.size !== o.size) {
    throw new TransportError(
      `rank 0 made the segment for ${info.size} ranks, this rank expects ${o.size}`,
      ctx,
    );
  }
  const layout = new Layout(info.size, info.ringBytes, info.arenaBytes);
  if (layout.totalBytes !== info.bytes) {
    throw new TransportError(`segment record says ${info.bytes} bytes, its layout ${layout.totalBytes}`, ctx);
  }
  const segment = Segment.open(lib, info.name, info.bytes, { rank: o.rank });
  try {
    const dv = new DataView(segment.buffer);
    const ok = dv.getUint32(layout.magic, true) === SEGMENT_MAGIC &&
      dv.getUint32(layout.version, true) === LAYOUT_VERSION &&
      dv.getUint32(layout.sizeWord, true) === o.size &&
      dv.getUint32(layout.ringWord, true) === info.ringBytes &&
      dv.getUint32(layout.groupWord, true) === o.group &&
      dv.getUint32(layout.arenaWord, true) === layout.arenaBytes;
    if (!ok) throw new TransportError(`segment ${info.name} does not hold this group's header`, ctx);
    const theirs = new Uint8Array(segment.buffer, layout.digest, DIGEST_BYTES).slice();
    if (!constantTimeEqual(theirs, await authDigest(o.token, info.nonce))) {
      throw new AuthError(`the shared segment of group ${o.group} belongs to a job with another token`, ctx);
    }
    // The slot is held until this process ends: a second process with this rank is refused here,
    // before it could write into rings that have a single producer.
    if (!segment.hold(o.rank)) {
      const pid = Atomics.load(new Int32Array(segment.buffer), layout.pid(o.rank) >> 2);
      throw new RendezvousError(
        `rank ${o.rank} joined twice: pid ${
          pid || "?"
        } (in its PID namespace) already holds rank ${o.rank}'s ` +
          `place in the shared segment ${info.name}; this process is pid ${Deno.pid}`,
        ctx,
      );
    }
  } catch (e) {
    segment.unmap();
    throw e;
  }
  return { segment, layout };
}

/**
 * Registers this rank (pid, then state; its owner slot is already held) and unlinks the name if it is
 * the last to arrive.
 */
function arrive(att: Attached, rank: number, pid: number): void {
  const { segment, layout } = att;
  const words = new Int32Array(segment.buffer);
  Atomics.store(words, layout.pid(rank) >> 2, pid);
  Atomics.store(words, layout.state(rank) >> 2, STATE_ALIVE);
  // Every rank now holds a mapping: the name is no longer needed, and without it nothing is left in
  // /dev/shm however the processes end.
  if (Atomics.add(words, layout.arrived >> 2, 1) + 1 === layout.size) segment.unlink();
}

function parse(text: string): Published | null {
  try {
    const v = JSON.parse(text) as Partial<Published>;
    const int = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
    if (
      typeof v.name === "string" && /^\/choir-[A-Za-z0-9_.-]+$/.test(v.name) && int(v.bytes) &&
      int(v.ringBytes) && (v.ringBytes! & (v.ringBytes! - 1)) === 0 && v.ringBytes! >= 4096 &&
      int(v.arenaBytes) && int(v.size) && typeof v.nonce === "string" && int(v.version)
    ) return v as Published;
  } catch { /* not JSON */ }
  return null;
}

async function authDigest(token: string, nonce: string): Promise<Uint8Array> {
  return await sha256(`auth\0${token}\0${nonce}`);
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(text)));
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
