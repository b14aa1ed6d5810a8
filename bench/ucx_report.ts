/**
 * @module
 * The lines a benchmark rank prints about UCX: its version, the RDMA devices the verbs probe found, and
 * per peer the transports UCX chose (its endpoint lanes) and the tag protocol thresholds.
 */

import { openUcxTransports } from "../transports/ucx/transport.ts";
import { probeVerbs } from "../transports/ucx/devices.ts";
import { ucxLib } from "../transports/ucx/lib.ts";

/** Report lines, `ucx:`-prefixed, for every UCX transport open in this process. */
export function ucxReport(): string[] {
  const v = ucxLib().version;
  const lines = [`ucx: libucp ${v.major}.${v.minor}.${v.release}; ${probeVerbs().summary}`];
  for (const t of openUcxTransports()) {
    for (const w of t.wires()) {
      lines.push(
        `ucx: rank ${t.rank} -> rank ${w.peer}: ${w.lanes.join(" ") || "(no lanes reported)"}` +
          (w.tagProtocols ? `; tag_send ${w.tagProtocols}` : ""),
      );
    }
  }
  return lines;
}
