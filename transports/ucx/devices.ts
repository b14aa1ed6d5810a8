/**
 * @module
 * What UCX has to run on: RDMA devices listed through libibverbs (when installed), and the wires UCX
 * chose for an endpoint (its lanes, from `ucp_ep_print_info`). Reports only; nothing here selects.
 */

import type { UcxLib } from "./lib.ts";

/** The result of the verbs probe. */
export interface VerbsProbe {
  /** RDMA device names (e.g. `mlx5_0`); empty when there are none. */
  devices: string[];
  /** One line for humans: the devices, or why there are none. */
  summary: string;
}

const VERBS_SYMBOLS = {
  ibv_get_device_list: { parameters: ["buffer"], result: "pointer" },
  ibv_free_device_list: { parameters: ["pointer"], result: "void" },
  ibv_get_device_name: { parameters: ["pointer"], result: "pointer" },
} as const;

/**
 * Lists RDMA devices (InfiniBand, RoCE, iWARP) through libibverbs. Without libibverbs, or with no
 * device, `devices` is empty and `summary` says which (UCX then runs over TCP and shared memory).
 */
export function probeVerbs(): VerbsProbe {
  let lib: Deno.DynamicLibrary<typeof VERBS_SYMBOLS>;
  try {
    lib = Deno.dlopen("libibverbs.so.1", VERBS_SYMBOLS);
  } catch (e) {
    return {
      devices: [],
      summary: `no RDMA devices: libibverbs.so.1 is not installed (Debian: libibverbs1) (${
        (e as Error).message
      })`,
    };
  }
  try {
    const n = new Int32Array(1);
    const list = lib.symbols.ibv_get_device_list(n);
    if (list === null) {
      // libibverbs returns NULL (not an empty list) when the kernel has no verbs support at all.
      return {
        devices: [],
        summary: "no RDMA devices: libibverbs found no verbs support (no InfiniBand/RoCE)",
      };
    }
    const view = new Deno.UnsafePointerView(list);
    const devices: string[] = [];
    for (let i = 0; i < n[0]; i++) {
      const dev = view.getPointer(i * 8);
      const name = dev === null ? null : lib.symbols.ibv_get_device_name(dev);
      if (name !== null) devices.push(Deno.UnsafePointerView.getCString(name));
    }
    lib.symbols.ibv_free_device_list(list);
    return {
      devices,
      summary: devices.length
        ? `RDMA devices: ${devices.join(", ")}`
        : "no RDMA devices (libibverbs found none; UCX will use TCP and shared memory)",
    };
  } finally {
    lib.close();
  }
}

/** Runs `print(FILE*)` against an in-memory stream and returns what it wrote. */
function captured(lib: UcxLib, print: (file: Deno.PointerObject) => void): string {
  const bufOut = new BigUint64Array(1);
  const sizeOut = new BigUint64Array(1);
  const file = lib.libc.open_memstream(bufOut, sizeOut);
  if (file === null) return "";
  print(file);
  lib.libc.fclose(file);
  const p = Deno.UnsafePointer.create(bufOut[0]);
  if (p === null) return "";
  const text = Deno.UnsafePointerView.getCString(p);
  lib.libc.free(p);
  return text;
}

/** UCX's own description of endpoint `ep` (lanes and the tag protocol thresholds). */
export function endpointInfo(lib: UcxLib, ep: Deno.PointerObject): string {
  return captured(lib, (f) => lib.ucp.ucp_ep_print_info(ep, f));
}

/** The transport/device pairs of an endpoint's lanes (e.g. `["sysv/memory", "cma/memory"]`). */
export function lanesOf(info: string): string[] {
  const out: string[] = [];
  for (const m of info.matchAll(/lane\[\d+\]:\s+\d+:([\w-]+\/[\w.:-]+?)\.\d+\s/g)) {
    if (!out.includes(m[1])) out.push(m[1]);
  }
  return out;
}

/** The tag-send protocol line of an endpoint (eager / rendezvous thresholds), if present. */
export function tagProtocolsOf(info: string): string | null {
  const m = info.match(/^#\s+tag_send:\s*(.*)$/m);
  return m ? m[1].trim() : null;
}
