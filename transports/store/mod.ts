/**
 * @module
 * The store folder's public face: the Store interface, its implementations (memory, file, prefix,
 * TCP client and Hono server) and rendezvous (init methods, createStore, joinBarrier, the watch for a
 * rank two processes claimed).
 */

export type { Arrival, ArrivalResult, Gathered, Gathering, Store } from "./store.ts";
export { MemoryStore, type MemoryStoreOptions } from "./memory_store.ts";
export { FileStore, type FileStoreOptions } from "./file_store.ts";
export { PrefixStore } from "./prefix_store.ts";
export { TcpStore, type TcpStoreOptions } from "./tcp_store.ts";
export {
  startStoreServer,
  STORE_THREAD_MIN_RANKS,
  type StoreServer,
  type StoreServerOptions,
  type StoreServerStats,
  storeThreadFor,
} from "./tcp_server.ts";
export type { HttpLimits } from "../http/server.ts";
export type { StoreStats } from "./tcp_protocol.ts";
export type { WatchOptions } from "./store.ts";
export { type InitMethod, parseInitMethod } from "./init_method.ts";
export {
  createStore,
  type CreateStoreOptions,
  joinBarrier,
  type JoinOptions,
  type Rendezvous,
} from "./rendezvous.ts";
export {
  type Claimant,
  type DuplicateRecord,
  type DuplicateWatch,
  type DuplicateWatchOptions,
  watchDuplicateRanks,
} from "./rank_claims.ts";
export { DEFAULT_STORE_TIMEOUT_MS } from "./store_util.ts";
