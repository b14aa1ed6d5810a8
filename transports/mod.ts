/**
 * @module
 * Transports move framed bytes between two ranks (TCP, shared memory, UCX), and the
 * store and rendezvous machinery ranks use to find each other.
 *
 * @example
 * ```ts
 * import { MemoryStore, TcpTransport } from "@choir/choir/transports";
 * const store = new MemoryStore();
 * const t = await TcpTransport.create({ rank: 0, size: 1, store, token: "secret", timeoutMs: 5000 });
 * await t.close();
 * ```
 */

export type { Channel, Transport } from "./transport.ts";
export { decodeHeader, encodeHeader, type FrameHeader, HEADER_BYTES } from "./frame.ts";
export { TcpTransport, type TcpTransportOptions } from "./tcp/transport.ts";
export { ShmTransport, type ShmTransportOptions } from "./shm/transport.ts";
export { type UcxPeerWires, UcxTransport, type UcxTransportOptions } from "./ucx/transport.ts";
export { probeVerbs, type VerbsProbe } from "./ucx/devices.ts";
export { type SegmentSource, WorkerTransport, type WorkerTransportOptions } from "./worker/transport.ts";
export type { SegmentSpec } from "./worker/segment.ts";
export { spawnWorkers, type SpawnWorkersOptions, WorkerGroup } from "./worker/spawn.ts";
export type { ArenaHost } from "./arena_host.ts";
export type { SymmetricAllocation } from "./shm/symmetric.ts";
export { type Route, RoutedTransport } from "./routed.ts";
export { constantTimeEqual, generateToken, statusToken } from "./token.ts";
export * from "./store/mod.ts";
export type { ChoirEnv } from "../config.ts";
export type { SchedulerKind } from "../schedulers.ts";
