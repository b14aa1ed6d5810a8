/**
 * @module
 * The bounds of choir's listeners, servers and decoders in one place: how long a connection may stay
 * silent, how many may wait at once, how accept loops back off when the process runs out of file
 * descriptors, how large a body or an object may be. Servers take these as defaults; docs/security.md
 * lists them. Nothing here is read per message: limits are checked at accept, handshake and request entry.
 */

/** How long an accepted connection whose hello has begun may take to finish the handshake (ms). */
export const HANDSHAKE_MAX_MS = 10_000;

/** A connection accepted by a rank's TCP listener that sends nothing for this many ms is dropped. */
export const HANDSHAKE_IDLE_MS = 1_000;

/**
 * Handshakes a TCP listener runs at once: at least this many, and at least the world size (every
 * higher rank may dial at the same moment). A connection beyond the cap closes the oldest pending one.
 */
export const MIN_PENDING_HANDSHAKES = 64;

/** First pause of an accept loop after an accept error (EMFILE and the like), in ms; it doubles. */
export const ACCEPT_BACKOFF_MIN_MS = 5;

/** Longest pause of an accept loop between retries, in ms. */
export const ACCEPT_BACKOFF_MAX_MS = 1_000;

/**
 * Connections the store server keeps open at once (default of `limits.maxConnections`): a rank keeps
 * about two, so 4,096 ranks need over 8,192; past the process's descriptor limit the accept loop backs off.
 */
export const STORE_MAX_CONNECTIONS = 32_768;

/** Largest request body the store server takes (a value, a compare-set, a key list): 1 GiB. */
export const STORE_MAX_BODY_BYTES = 1 << 30;

/** Longest server-side wait of a store long-poll (`timeout=` is clamped to it): 10 minutes. */
export const STORE_MAX_WAIT_MS = 600_000;

/** Connections a status server keeps open at once. */
export const STATUS_MAX_CONNECTIONS = 256;

/** Largest request body a status server takes (it expects none). */
export const STATUS_MAX_BODY_BYTES = 64 << 10;

/** Largest request head (request line and headers) an HTTP server reads: 16 KiB. */
export const HTTP_MAX_HEAD_BYTES = 16 << 10;

/**
 * Once a request's first byte arrived (or a connection opened), its whole head must arrive within this many
 * ms. A minute, not 10 s: at 4,096 simulated ranks a busy client took longer than 10 s between connecting and
 * writing, and the server dropped it; a silent stranger is bounded by the connection cap anyway.
 */
export const HTTP_HEAD_TIMEOUT_MS = 60_000;

/** A connection with no request in progress is closed after this many ms of silence. */
export const HTTP_IDLE_TIMEOUT_MS = 300_000;

/** A body being received or a response being sent must make progress within this many ms. */
export const HTTP_IO_TIMEOUT_MS = 30_000;

/** Largest encoded object an object collective sends or accepts (option `maxObjectBytes`): 64 MiB. */
export const DEFAULT_MAX_OBJECT_BYTES = 64 << 20;

/** Deepest nesting of arrays, objects, Maps and Sets the object decoder accepts. */
export const MAX_OBJECT_DEPTH = 100;
