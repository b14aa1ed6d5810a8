/**
 * @module
 * The libc calls the shared-memory transport needs (shm_open, mmap, futex, fcntl locks, ...) through Deno FFI,
 * loaded once, with errno turned into messages. What the calls are for is left to the other shm files.
 */

import { LibraryUnavailableError, PermissionError, TransportError } from "../../errors.ts";

/** The libc functions bound, with their C signatures in Deno's FFI notation. */
const SYMBOLS = {
  shm_open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  shm_unlink: { parameters: ["buffer"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  posix_fallocate: { parameters: ["i32", "i64", "i64"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  // fcntl(2) is variadic; its third argument here is always a pointer (a struct flock), passed as the
  // first variadic integer register, which is where glibc reads it from.
  fcntl: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  // Listing /dev/shm for the start-up sweep without --allow-read.
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  // For the host id without --allow-sys and --allow-all (Deno guards /proc behind --allow-all).
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // Re-reading /proc/loadavg from its start without a seek (run_queue.ts).
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  gethostname: { parameters: ["buffer", "usize"], result: "i32" },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  sched_yield: { parameters: [], result: "i32" },
  // Binding a rank's thread to a CPU (cpu_bind.ts); pid 0 is the calling thread.
  sched_getaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
  sched_setaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
  // syscall(2) is variadic, but glibc's version only moves registers, so fixed prototypes are safe.
  // The wait runs on Deno's blocking pool so that it never stalls the event loop.
  futex_wait: {
    name: "syscall",
    parameters: ["i64", "pointer", "i32", "i32", "buffer"],
    result: "i64",
    nonblocking: true,
  },
  // The same wait on the calling thread, for short naps by code that must not yield (the arena).
  futex_wait_sync: { name: "syscall", parameters: ["i64", "pointer", "i32", "i32", "buffer"], result: "i64" },
  futex_wake: { name: "syscall", parameters: ["i64", "pointer", "i32", "i32", "pointer"], result: "i64" },
  pidfd_open: { name: "syscall", parameters: ["i64", "i32", "i32"], result: "i64" },
} as const;

/** The bound libc functions (raw: they return -1 and leave errno set on failure). */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** libc plus the syscall numbers of this machine. */
export interface Libc {
  /** The bound functions. */
  readonly fn: LibcSymbols;
  /** `SYS_futex` on this architecture. */
  readonly sysFutex: bigint;
  /** `SYS_pidfd_open` (the same number on every architecture that has it). */
  readonly sysPidfdOpen: bigint;
}

/** Linux constants (x86_64 and aarch64 agree on all of these). */
export const O_RDONLY = 0;
/** `O_RDWR`. */
export const O_RDWR = 2;
/** `O_CREAT`. */
export const O_CREAT = 0o100;
/** `O_EXCL`. */
export const O_EXCL = 0o200;
/** `PROT_READ | PROT_WRITE`. */
export const PROT_RW = 3;
/** `MAP_SHARED`. */
export const MAP_SHARED = 1;
/** `MAP_FIXED`: map exactly at the given address, replacing what was there. */
export const MAP_FIXED = 0x10;
/** `MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED`: fresh zero pages in place of an existing mapping. */
export const MAP_ANON_FIXED = 0x02 | 0x20 | 0x10;
/** `FUTEX_WAIT` (not the private variant: the word is shared between processes). */
export const FUTEX_WAIT = 0;
/** `FUTEX_WAKE`. */
export const FUTEX_WAKE = 1;
/** `ENOENT`. */
export const ENOENT = 2;
/** `ESRCH`. */
export const ESRCH = 3;
/** `EAGAIN`. */
export const EAGAIN = 11;
/** `EACCES`. */
export const EACCES = 13;

const SYS_FUTEX: Record<string, bigint> = { x86_64: 202n, aarch64: 98n };

let loaded: Libc | null = null;

/**
 * Loads libc once. Throws PermissionError without `--allow-ffi`, {@link LibraryUnavailableError} when
 * the system is not Linux on x86_64/aarch64 or `libc.so.6` cannot be opened.
 */
export function libc(): Libc {
  if (loaded) return loaded;
  const ctx = { op: "shm.init" };
  if (Deno.build.os !== "linux" || !(Deno.build.arch in SYS_FUTEX)) {
    throw new LibraryUnavailableError(
      `the shared-memory transport needs Linux on x86_64 or aarch64 (this is ${Deno.build.os}/${Deno.build.arch})`,
      ctx,
    );
  }
  // Query first: without --allow-ffi, dlopen would prompt on a terminal instead of failing.
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new PermissionError(
      "the shared-memory transport calls libc through FFI (or use the tcp or worker transport)",
      "--allow-ffi",
      ctx,
    );
  }
  try {
    const lib = Deno.dlopen("libc.so.6", SYMBOLS);
    loaded = { fn: lib.symbols, sysFutex: SYS_FUTEX[Deno.build.arch], sysPidfdOpen: 434n };
  } catch (e) {
    throw new LibraryUnavailableError(`cannot load libc.so.6 through FFI: ${(e as Error).message}`, {
      ...ctx,
      cause: e,
    });
  }
  return loaded;
}

/** The calling thread's errno (read right after the failed call, on the same thread). */
export function errno(lib: Libc): number {
  const p = lib.fn.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32(0);
}

/** Describes an errno value: `ENOENT`-style text from strerror plus the number. */
function describeErrno(lib: Libc, code: number): string {
  const p = lib.fn.strerror(code);
  const text = p === null ? "unknown error" : Deno.UnsafePointerView.getCString(p);
  return `${text} (errno ${code})`;
}

/** A TransportError for a failed libc call, naming the call, its argument, errno, and a hint if any. */
export function callError(
  lib: Libc,
  call: string,
  code: number,
  ctx: { rank?: number; peer?: number; op?: string },
  detail = "",
  hint = "",
): TransportError {
  const what = detail ? `${call}(${detail})` : call;
  return new TransportError(`${what} failed: ${describeErrno(lib, code)}${hint}`, { op: "shm", ...ctx });
}

/** Encodes a string as a NUL-terminated C string. */
export function cString(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}
