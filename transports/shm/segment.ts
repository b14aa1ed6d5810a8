/**
 * @module
 * A named POSIX shared-memory segment (/dev/shm) mapped MAP_SHARED: create (exclusive, mode 0600,
 * space reserved up front), open, unlink, unmap. What goes inside it is left to layout.ts and its users.
 */

import {
  callError,
  cString,
  ENOENT,
  errno,
  type Libc,
  MAP_ANON_FIXED,
  MAP_FIXED,
  MAP_SHARED,
  O_CREAT,
  O_EXCL,
  O_RDWR,
  PROT_RW,
} from "./libc.ts";
import { TransportError } from "../../errors.ts";

const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
const SEEK_END = 2;

/**
 * The part of a segment name that identifies the job (`<id>-`, or empty without a job id): every
 * segment of a job is named `/choir-<id>-...`, which is what the launcher sweeps after the job.
 */
export function jobTag(jobId: string | undefined): string {
  return jobId ? jobId.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 32) + "-" : "";
}

/** Who is asking, for error messages. */
export interface SegmentContext {
  /** This rank. */
  rank: number;
}

/** One mapped segment. The mapping outlives the name: unlink as soon as every rank has it open. */
export class Segment {
  /** The shm name (`/choir-...`). */
  readonly name: string;
  /** Mapped length in bytes. */
  readonly bytes: number;
  /** Address of the mapping. */
  readonly base: Deno.PointerObject;
  /** The mapping as an ArrayBuffer (plain, not shared: Atomics.load/store/add work, Atomics.wait not). */
  readonly buffer: ArrayBuffer;
  readonly #lib: Libc;
  readonly #ctx: SegmentContext;
  readonly #placed: boolean;
  #linked = true;
  #mapped = true;

  private constructor(
    lib: Libc,
    name: string,
    bytes: number,
    base: Deno.PointerObject,
    ctx: SegmentContext,
    placed: boolean,
  ) {
    this.#lib = lib;
    this.name = name;
    this.bytes = bytes;
    this.base = base;
    this.#ctx = ctx;
    this.#placed = placed;
    this.buffer = Deno.UnsafePointerView.getArrayBuffer(base, bytes);
  }

  /**
   * Creates `name` (which must not exist) with `bytes` of zeroed memory and maps it (at `at`, over
   * memory this process owns, when given). The space is reserved now, so a full /dev/shm fails here
   * with ENOSPC instead of SIGBUS on first touch later.
   */
  static create(
    lib: Libc,
    name: string,
    bytes: number,
    ctx: SegmentContext,
    at?: Deno.PointerObject,
  ): Segment {
    const cname = cString(name);
    const fd = lib.fn.shm_open(cname, O_RDWR | O_CREAT | O_EXCL, 0o600);
    if (fd < 0) throw callError(lib, "shm_open", errno(lib), ctx, name);
    try {
      if (lib.fn.ftruncate(fd, BigInt(bytes)) !== 0) {
        throw callError(lib, "ftruncate", errno(lib), ctx, `${name}, ${bytes}`);
      }
      const rc = lib.fn.posix_fallocate(fd, 0n, BigInt(bytes)); // returns the error number itself
      if (rc !== 0) {
        throw callError(lib, "posix_fallocate", rc, ctx, `${name}, ${bytes}`, " (is /dev/shm big enough?)");
      }
      return new Segment(lib, name, bytes, map(lib, fd, bytes, name, ctx, at), ctx, at !== undefined);
    } catch (e) {
      lib.fn.shm_unlink(cname);
      throw e;
    } finally {
      lib.fn.close(fd);
    }
  }

  /** Opens and maps (at `at`, when given) the existing segment `name`, which must be exactly `bytes` long. */
  static open(
    lib: Libc,
    name: string,
    bytes: number,
    ctx: SegmentContext,
    at?: Deno.PointerObject,
  ): Segment {
    const fd = lib.fn.shm_open(cString(name), O_RDWR, 0);
    if (fd < 0) {
      const code = errno(lib);
      const hint = code === ENOENT
        ? " (the group's segment is gone: did a rank close or die before every rank attached?)"
        : "";
      throw callError(lib, "shm_open", code, ctx, name, hint);
    }
    try {
      // Mapping past the end of the file would SIGBUS on first touch: check the length first.
      const size = lib.fn.lseek(fd, 0n, SEEK_END);
      if (size !== BigInt(bytes)) {
        throw new TransportError(`segment ${name} has ${size} bytes, expected ${bytes}`, {
          ...ctx,
          op: "shm",
        });
      }
      return new Segment(lib, name, bytes, map(lib, fd, bytes, name, ctx, at), ctx, at !== undefined);
    } finally {
      lib.fn.close(fd);
    }
  }

  /** Whether this process has not yet unlinked the name (another process may have). */
  get linked(): boolean {
    return this.#linked;
  }

  /** Removes the name from /dev/shm (mappings stay valid). Idempotent; a name already gone is fine. */
  unlink(): void {
    if (!this.#linked) return;
    this.#linked = false;
    if (this.#lib.fn.shm_unlink(cString(this.name)) !== 0) {
      const code = errno(this.#lib);
      if (code !== ENOENT) throw callError(this.#lib, "shm_unlink", code, this.#ctx, this.name);
    }
  }

  /**
   * Lets go of the shared memory. The address range is first replaced by private zero pages, so a
   * view that is still used by mistake reads zeros (and its waits time out) instead of crashing the
   * process; the range itself is unmapped once the garbage collector has dropped {@link buffer}
   * (unless the segment was placed over memory someone else owns, which keeps the zero pages).
   */
  unmap(): void {
    if (!this.#mapped) return;
    this.#mapped = false;
    const lib = this.#lib;
    const p = lib.fn.mmap(this.base, BigInt(this.bytes), PROT_RW, MAP_ANON_FIXED, -1, 0n);
    if (p === null || Deno.UnsafePointer.value(p) === MAP_FAILED) {
      throw callError(lib, "mmap", errno(lib), this.#ctx, `MAP_FIXED over ${this.name}`);
    }
    if (!this.#placed) unmapWhenCollected.register(this.buffer, { lib, base: this.base, bytes: this.bytes });
  }
}

/** Unmaps a released range once nothing can reach its ArrayBuffer any more. */
const unmapWhenCollected = new FinalizationRegistry<{ lib: Libc; base: Deno.PointerObject; bytes: number }>(
  ({ lib, base, bytes }) => void lib.fn.munmap(base, BigInt(bytes)),
);

function map(
  lib: Libc,
  fd: number,
  bytes: number,
  name: string,
  ctx: SegmentContext,
  at: Deno.PointerObject | undefined,
): Deno.PointerObject {
  const p = lib.fn.mmap(at ?? null, BigInt(bytes), PROT_RW, at ? MAP_SHARED | MAP_FIXED : MAP_SHARED, fd, 0n);
  if (p === null || Deno.UnsafePointer.value(p) === MAP_FAILED) {
    throw callError(lib, "mmap", errno(lib), ctx, `${name}, ${bytes}`);
  }
  return p;
}
