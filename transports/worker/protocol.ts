/**
 * @module
 * The messages between the main thread's hub (spawn.ts) and its Worker ranks (rank.ts): the
 * handshake on the Worker's own port, then requests on a private MessagePort, and errors carried
 * across as their name and message. Serving and sending them is left to those two files.
 */

import {
  AbortedError,
  AuthError,
  type ChoirError,
  CollectiveTimeoutError,
  InvalidArgumentError,
  PeerLostError,
  RendezvousError,
  StoreError,
  StoreTimeoutError,
  TransportError,
} from "../../errors.ts";
import type { SegmentSpec } from "./segment.ts";

/** The Worker name prefix that marks a choir Worker rank (`choir-worker:<job>:<rank>`). */
export const WORKER_NAME_PREFIX = "choir-worker:";

/** Worker -> main, on the Worker's own port. */
export type RankMessage =
  | { choir: "hello" }
  | { choir: "joined" }
  | { choir: "left" }
  | { choir: "failed"; error: WireError }
  | { choir: "result"; value: unknown };

/** Main -> Worker, on the Worker's own port: the answer to `hello`. */
export interface InitMessage {
  /** Tag. */
  choir: "init";
  /** This Worker's rank. */
  rank: number;
  /** Number of ranks. */
  size: number;
  /** Default timeout of joining and of every operation, ms. */
  timeoutMs: number;
  /** What the spawner passed for the ranks (structured-cloned). */
  data: unknown;
  /** The private port for requests. */
  port: MessagePort;
  /** Ring and arena sizes for the world group's memory. */
  spec: Omit<SegmentSpec, "size">;
}

/** What a request asks, before it gets an id. */
export type RequestBody =
  | { op: "store"; method: StoreMethod; args: unknown[] }
  | { op: "segment"; key: string; spec: SegmentSpec; rank: number }
  | { op: "symmetric"; key: string; size: number; stride: number };

/** A request on the private port. */
export type Request = RequestBody & { id: number };

/** The Store methods forwarded to the hub's store. */
export type StoreMethod =
  | "set"
  | "get"
  | "add"
  | "compareSet"
  | "wait"
  | "multiGet"
  | "watch"
  | "check"
  | "deleteKey"
  | "numKeys";

/** A reply on the private port. */
export type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: WireError };

/** An error as it crosses a port. */
export interface WireError {
  /** The class name. */
  name: string;
  /** The full message (already prefixed with rank and op). */
  message: string;
}

/** Flattens `e` for a port. */
export function toWire(e: unknown): WireError {
  return e instanceof Error ? { name: e.name, message: e.message } : { name: "Error", message: String(e) };
}

const KINDS: Record<string, new (m: string) => ChoirError> = {
  AbortedError,
  AuthError,
  CollectiveTimeoutError: class extends CollectiveTimeoutError {
    constructor(m: string) {
      super(m, 0);
    }
  },
  InvalidArgumentError,
  PeerLostError,
  RendezvousError,
  StoreError,
  StoreTimeoutError,
  TransportError,
};

/** Rebuilds a typed error from the wire (a ChoirError of the same class where it is one of ours). */
export function fromWire(w: WireError): Error {
  const Kind = KINDS[w.name];
  if (Kind) {
    const e = new Kind(w.message);
    e.name = w.name;
    return e;
  }
  const e = new Error(w.message);
  e.name = w.name;
  return e;
}
