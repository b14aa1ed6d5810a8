/**
 * @module
 * What the heartbeat thread and the training thread say to each other, and the frames neighbours
 * exchange on a heartbeat link: 8 bytes (kind, reason, a 16-bit length, a rank), followed for a
 * cause by that many bytes (`abort_cause.ts`'s encoding).
 */

/** Group id the heartbeat links carry in the transport's hello (not a process group's). */
export const HEARTBEAT_GROUP = 0x48425431; // "HBT1"

/** Bytes of one frame on a heartbeat link. */
export const FRAME_BYTES = 8;

/** Frame kinds. */
export const Kind = {
  /** I am alive. */
  Beat: 0x48,
  /** I am leaving on purpose (destroy()): do not report me lost. */
  Bye: 0x42,
  /** The rank in this frame is lost (gossip going round the ring). */
  Lost: 0x4c,
  /** The rank in this frame failed, and here is why (its in-band cause, going round the ring). */
  Cause: 0x43,
} as const;
/** A frame kind. */
export type Kind = typeof Kind[keyof typeof Kind];

/** Why a rank counts as lost. */
export const LostWhy = {
  /** Its link closed without a goodbye: the process ended or was killed. */
  Closed: 0,
  /** Nothing came from it for longer than the timeout: its host or network is gone, or it froze. */
  Silent: 1,
} as const;
/** A reason a rank counts as lost. */
export type LostWhy = typeof LostWhy[keyof typeof LostWhy];

/** What the heartbeat thread starts with. */
export interface HeartbeatInit {
  rank: number;
  size: number;
  token: string;
  /** Address to listen on. */
  bind: string;
  intervalMs: number;
  timeoutMs: number;
  /** How long a link that closed without a goodbye waits before its peer counts as lost. */
  graceMs: number;
}

/** Training thread to heartbeat thread. */
export type ToHeartbeat =
  | { type: "init"; init: HeartbeatInit }
  | { type: "dial"; peer: number; hostname: string; port: number }
  | { type: "cause"; bytes: Uint8Array }
  | { type: "stop" };

/** Heartbeat thread to training thread. */
export type FromHeartbeat =
  | { type: "ready"; port: number }
  | { type: "lost"; peer: number; why: LostWhy; via: number }
  | { type: "cause"; bytes: Uint8Array }
  | { type: "told" }
  | { type: "error"; message: string }
  | { type: "stopped" };
