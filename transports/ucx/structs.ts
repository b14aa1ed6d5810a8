/**
 * @module
 * The UCP structs choir fills in, as explicit byte offsets per UCX major.minor (measured with offsetof
 * on that version's headers), plus the flag values. A version without a verified layout is refused.
 */

import { LibraryUnavailableError } from "../../errors.ts";

/** Byte offsets and sizes of the UCP structs used (x86-64 / aarch64, LP64). */
export interface UcpLayout {
  /** `ucp_params_t`. */
  params: { size: number; fieldMask: number; features: number; estimatedNumEps: number };
  /** `ucp_worker_params_t`. */
  workerParams: { size: number; fieldMask: number; threadMode: number };
  /** `ucp_ep_params_t`. */
  epParams: {
    size: number;
    fieldMask: number;
    address: number;
    errMode: number;
    errHandlerCb: number;
    errHandlerArg: number;
    userData: number;
  };
  /** `ucp_request_param_t`. */
  requestParam: {
    size: number;
    opAttrMask: number;
    flags: number;
    datatype: number;
    recvInfo: number;
    memh: number;
  };
  /** `ucp_tag_recv_info_t`. */
  tagRecvInfo: { size: number; senderTag: number; length: number };
  /** `ucp_mem_map_params_t`. */
  memMapParams: { size: number; fieldMask: number; address: number; length: number };
}

/** UCX 1.13 (Debian 12's 1.13.1), measured with offsetof on libucx-dev 1.13.1's headers. */
const LAYOUT_1_13: UcpLayout = {
  params: { size: 80, fieldMask: 0, features: 8, estimatedNumEps: 56 },
  workerParams: { size: 200, fieldMask: 0, threadMode: 8 },
  epParams: {
    size: 104,
    fieldMask: 0,
    address: 8,
    errMode: 16,
    errHandlerCb: 24,
    errHandlerArg: 32,
    userData: 40,
  },
  requestParam: { size: 72, opAttrMask: 0, flags: 4, datatype: 24, recvInfo: 56, memh: 64 },
  tagRecvInfo: { size: 16, senderTag: 0, length: 8 },
  memMapParams: { size: 40, fieldMask: 0, address: 8, length: 16 },
};

/** The layouts known to be right, by `major.minor`. */
const LAYOUTS: Readonly<Record<string, UcpLayout>> = { "1.13": LAYOUT_1_13 };

/**
 * The layout for libucp `major.minor`. Throws {@link LibraryUnavailableError} for any other version:
 * guessed offsets would corrupt memory instead of failing.
 */
export function layoutFor(major: number, minor: number): UcpLayout {
  const l = LAYOUTS[`${major}.${minor}`];
  if (l) return l;
  throw new LibraryUnavailableError(
    `libucp ${major}.${minor} has no verified struct layout in choir (known: ${
      Object.keys(LAYOUTS).join(", ")
    }); add its offsets to transports/ucx/structs.ts after checking them with offsetof`,
    { op: "ucx.init" },
  );
}

/** `UCP_PARAM_FIELD_*`. */
export const PARAM_FIELD = { FEATURES: 1n, ESTIMATED_NUM_EPS: 0x40n } as const;
/** `UCP_FEATURE_*`. */
export const FEATURE = { TAG: 1n, WAKEUP: 0x10n } as const;
/** `UCP_WORKER_PARAM_FIELD_THREAD_MODE`. */
export const WORKER_PARAM_FIELD_THREAD_MODE = 1n;
/** `UCS_THREAD_MODE_SINGLE`. */
export const THREAD_MODE_SINGLE = 0;
/** `UCP_EP_PARAM_FIELD_*`. */
export const EP_FIELD = {
  REMOTE_ADDRESS: 1n,
  ERR_HANDLING_MODE: 2n,
  ERR_HANDLER: 4n,
  USER_DATA: 8n,
} as const;
/** `UCP_ERR_HANDLING_MODE_PEER`: endpoints report a failed peer instead of hanging. */
export const ERR_HANDLING_MODE_PEER = 1;
/** `UCP_ERR_HANDLING_MODE_NONE`: no failure reporting (every transport supports it). */
export const ERR_HANDLING_MODE_NONE = 0;
/** `UCP_OP_ATTR_FIELD_*` and `UCP_OP_ATTR_FLAG_*`. */
export const OP_ATTR = {
  FLAGS: 0x10,
  RECV_INFO: 0x80,
  MEMH: 0x100,
  NO_IMM_CMPL: 0x10000,
} as const;
/** `UCP_EP_CLOSE_FLAG_FORCE`: close without flushing (the peer may be gone). */
export const EP_CLOSE_FLAG_FORCE = 1;
/** `UCP_MEM_MAP_PARAM_FIELD_*`. */
export const MEM_MAP_FIELD = { ADDRESS: 1n, LENGTH: 2n } as const;

/** A zeroed struct of `size` bytes and a little-endian view of it. */
export function struct(size: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(size);
  return { bytes, view: new DataView(bytes.buffer) };
}

/** The address of `p` as a bigint (0 for null), for storing a pointer inside a struct. */
export function addr(p: Deno.PointerValue): bigint {
  return p === null ? 0n : Deno.UnsafePointer.value(p);
}
