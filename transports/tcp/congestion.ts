/**
 * @module
 * Picks the congestion control of a same-host TCP socket of the channel's fast path. This machine's
 * default, BBR, paces a loopback connection and keeps its window near one round trip's worth of
 * segments, so a 1 MiB exchange moves in bursts with waits between (about 1.4 GB/s); Reno sends what the
 * window allows at once (2.4-2.9 GB/s, docs/benchmarks.md, "Issue 23, TCP 1 MiB (third pass)").
 * Connections to other hosts keep the system's choice.
 */

import type { Ipv4, SocketLibc } from "../socket_lookup.ts";

const IPPROTO_TCP = 6;
const TCP_CONGESTION = 13;
/** Always in the kernel's allowed list (an unprivileged process may pick it). */
const RENO = new TextEncoder().encode("reno");

/** Whether `local` and `peer` are the same host: a loopback peer or the same address. */
function sameHost(local: Ipv4, peer: Ipv4): boolean {
  return peer.a[0] === 127 || local.a.every((x, i) => x === peer.a[i]);
}

/**
 * Sets Reno on socket `fd` where `local` and `peer` are the same host; returns whether it did. A refusal
 * (no Reno in this kernel) leaves the socket as it was: only speed depends on it.
 */
export function useSameHostCongestion(l: SocketLibc, fd: number, local: Ipv4, peer: Ipv4): boolean {
  if (!sameHost(local, peer)) return false;
  return l.setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, RENO, RENO.byteLength) === 0;
}
