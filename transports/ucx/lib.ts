/**
 * @module
 * The libucp/libucs functions choir calls, bound once through Deno FFI, and the library's version.
 * Struct layouts are structs.ts's; what the calls are used for is worker.ts's and the channels'.
 */

import { LibraryUnavailableError } from "../../errors.ts";

/** The UCP functions bound, with their C signatures in Deno's FFI notation. */
const UCP_SYMBOLS = {
  ucp_get_version: { parameters: ["buffer", "buffer", "buffer"], result: "void" },
  ucp_config_read: { parameters: ["pointer", "pointer", "buffer"], result: "i32" },
  ucp_config_release: { parameters: ["pointer"], result: "void" },
  // ucp_init() is static inline in ucp.h; the exported entry point takes the API version.
  ucp_init_version: { parameters: ["u32", "u32", "buffer", "pointer", "buffer"], result: "i32" },
  ucp_cleanup: { parameters: ["pointer"], result: "void" },
  ucp_worker_create: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  ucp_worker_destroy: { parameters: ["pointer"], result: "void" },
  ucp_worker_get_address: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  ucp_worker_release_address: { parameters: ["pointer", "pointer"], result: "void" },
  ucp_worker_progress: { parameters: ["pointer"], result: "u32" },
  ucp_worker_get_efd: { parameters: ["pointer", "buffer"], result: "i32" },
  ucp_worker_arm: { parameters: ["pointer"], result: "i32" },
  ucp_worker_signal: { parameters: ["pointer"], result: "i32" },
  ucp_worker_print_info: { parameters: ["pointer", "pointer"], result: "void" },
  ucp_ep_create: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  ucp_ep_close_nbx: { parameters: ["pointer", "buffer"], result: "pointer" },
  ucp_ep_print_info: { parameters: ["pointer", "pointer"], result: "void" },
  ucp_tag_send_nbx: { parameters: ["pointer", "buffer", "usize", "u64", "buffer"], result: "pointer" },
  ucp_tag_recv_nbx: {
    parameters: ["pointer", "buffer", "usize", "u64", "u64", "buffer"],
    result: "pointer",
  },
  ucp_tag_recv_request_test: { parameters: ["pointer", "buffer"], result: "i32" },
  ucp_request_check_status: { parameters: ["pointer"], result: "i32" },
  ucp_request_cancel: { parameters: ["pointer", "pointer"], result: "void" },
  ucp_request_free: { parameters: ["pointer"], result: "void" },
  ucp_mem_map: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  ucp_mem_unmap: { parameters: ["pointer", "pointer"], result: "i32" },
} as const;

/** The libucs function used to name status codes. */
const UCS_SYMBOLS = {
  ucs_status_string: { parameters: ["i32"], result: "pointer" },
} as const;

/** The libc calls the UCX transport needs: the event-fd wait and a memory stream for UCX's reports. */
const LIBC_SYMBOLS = {
  // Runs on Deno's blocking pool, so an idle rank sleeps in the kernel instead of spinning a core.
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  open_memstream: { parameters: ["buffer", "buffer"], result: "pointer" },
  fclose: { parameters: ["pointer"], result: "i32" },
  free: { parameters: ["pointer"], result: "void" },
} as const;

/** The bound UCP functions. */
export type UcpSymbols = Deno.DynamicLibrary<typeof UCP_SYMBOLS>["symbols"];
/** The bound libc functions. */
export type UcxLibcSymbols = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

/** libucp, libucs and the libc helpers, with the version libucp reports. */
export interface UcxLib {
  /** UCP functions. */
  readonly ucp: UcpSymbols;
  /** `ucs_status_string`. */
  readonly ucs: Deno.DynamicLibrary<typeof UCS_SYMBOLS>["symbols"];
  /** poll, open_memstream, fclose, free. */
  readonly libc: UcxLibcSymbols;
  /** `major.minor.release` as libucp reports it. */
  readonly version: { major: number; minor: number; release: number };
}

/** The Debian package that provides libucp.so.0. */
const UCX_PACKAGE = "libucx0";

let loaded: UcxLib | null = null;
let failure: LibraryUnavailableError | null = null;

/**
 * Loads libucp.so.0 and libucs.so.0 once. Throws {@link LibraryUnavailableError} naming the package
 * to install when they are missing (or FFI is not permitted). `names` replaces the library file names
 * (tests use it to see the error of a machine without UCX); such loads are not cached.
 */
export function ucxLib(names?: { ucp: string; ucs: string }): UcxLib {
  if (!names && loaded) return loaded;
  if (!names && failure) throw failure;
  const open = <S extends Deno.ForeignLibraryInterface>(name: string, syms: S) => {
    try {
      return Deno.dlopen(name, syms).symbols;
    } catch (e) {
      const err = new LibraryUnavailableError(
        `the UCX transport (CHOIR_TRANSPORT=ucx) needs ${name}, from the ${UCX_PACKAGE} package ` +
          `(Debian/Ubuntu: apt-get install ${UCX_PACKAGE}); loading it failed: ${(e as Error).message}`,
        { op: "ucx.init", cause: e },
      );
      if (!names) failure = err;
      throw err;
    }
  };
  const ucp = open(names?.ucp ?? "libucp.so.0", UCP_SYMBOLS);
  const ucs = open(names?.ucs ?? "libucs.so.0", UCS_SYMBOLS);
  const libc = open("libc.so.6", LIBC_SYMBOLS);
  const v = new Uint32Array(3);
  ucp.ucp_get_version(v.subarray(0, 1), v.subarray(1, 2), v.subarray(2, 3));
  const lib = { ucp, ucs, libc, version: { major: v[0], minor: v[1], release: v[2] } };
  if (!names) loaded = lib;
  return lib;
}

/** Whether libucp can be loaded here, and if not, why (for tests that skip). */
export function ucxAvailability(): { ok: true; version: string } | { ok: false; reason: string } {
  try {
    const { version: v } = ucxLib();
    return { ok: true, version: `${v.major}.${v.minor}.${v.release}` };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}
