/**
 * @module
 * A named POSIX shared-memory segment (/dev/shm) mapped MAP_SHARED: create (exclusive, mode 0600,
 * space reserved up front, its creator's owner slot taken at once), open, owner slots (owner_lock.ts),
 * unlink, unmap; and how segment names carry their job. What goes inside is left to layout.ts and its users.
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
import { lockSlot, slotHeld } from "./owner_lock.ts";
import { hashedId } from "../token.ts";

const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
const SEEK_END = 2;

/**
 * The part of a segment name that identifies the job: `j` and the first 16 hex digits of the SHA-256 of
 * the whole job id, then `.` (which no tag contains, so one job's names never start with another's tag),
 * or `n.` without a job id. Every segment is named `/choir-<tag><kind>...`, which is what the launcher
 * sweeps after the job, by exact tag.
 */
export function jobTag(jobId: string | undefined): Promise<string> {
  return hashedId(jobId);
}

/**
 * Names of segments made under the owner-slot protocol (a group's: `g<group>-<id>`, a symmetric
 * allocation's: `s<index>-r<rank>-<id>`): only these may be judged abandoned by a sweep, since only
 * their users hold slots. Names of other versions or programs never match.
 */
export const OWNED_NAME: RegExp = /^choir-(?:j[0-9a-f]{16}|n)\.(?:g\d+|s\d+-r\d+)-[0-9a-f]{16}$/;

/** Who is asking, for error messages. */
export interface SegmentContext {
  /** This rank. */
  rank: number;
}

/**
 * One mapped segment. The mapping outlives the name: unlink as soon as every rank has it open. The
 * descriptor stays open (holding this process's owner slot, if it took one) until {@link closeFd} or
 * {@link unmap}.
 */
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
  #fd: number;
  #linked = true;
  #mapped = true;

  private constructor(
    lib: Libc,
    name: string,
    bytes: number,
    base: Deno.PointerObject,
    ctx: SegmentContext,
    placed: boolean,
    fd: number,
  ) {
    this.#lib = lib;
    this.#fd = fd;
    this.name = name;
    this.bytes = bytes;
    this.base = base;
    this.#ctx = ctx;
    this.#placed = placed;
    this.buffer = Deno.UnsafePointerView.getArrayBuffer(base, bytes);
  }

  /**
   * Creates `name` (which must not exist) with `bytes` of zeroed memory and maps it (at `at`, over
   * memory this process owns, when given). Owner slot `slot` is taken before the segment has any size,
   * so a sweep never takes a segment being made for abandoned. The space is reserved now, so a full
   * /dev/shm fails here with ENOSPC instead of SIGBUS on first touch later.
   */
  static create(
    lib: Libc,
    name: string,
    bytes: number,
    ctx: SegmentContext,
    slot: number,
    at?: Deno.PointerObject,
  ): Segment {
    const cname = cString(name);
    const fd = lib.fn.shm_open(cname, O_RDWR | O_CREAT | O_EXCL, 0o600);
    if (fd < 0) throw callError(lib, "shm_open", errno(lib), ctx, name);
    try {
      if (!lockSlot(lib, fd, slot, ctx)) {
        throw new TransportError(`slot ${slot} of the new segment ${name} is held`, { ...ctx, op: "shm" });
      }
      if (lib.fn.ftruncate(fd, BigInt(bytes)) !== 0) {
        throw callError(lib, "ftruncate", errno(lib), ctx, `${name}, ${bytes}`);
      }
      const rc = lib.fn.posix_fallocate(fd, 0n, BigInt(bytes)); // returns the error number itself
      if (rc !== 0) {
        throw callError(lib, "posix_fallocate", rc, ctx, `${name}, ${bytes}`, " (is /dev/shm big enough?)");
      }
      return new Segment(lib, name, bytes, map(lib, fd, bytes, name, ctx, at), ctx, at !== undefined, fd);
    } catch (e) {
      lib.fn.shm_unlink(cname);
      lib.fn.close(fd);
      throw e;
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
      return new Segment(lib, name, bytes, map(lib, fd, bytes, name, ctx, at), ctx, at !== undefined, fd);
    } catch (e) {
      lib.fn.close(fd);
      throw e;
    }
  }

  /**
   * Takes owner slot `slot` for this process (held until the descriptor closes, however the process
   * ends); false when another process holds it.
   */
  hold(slot: number): boolean {
    return this.#fd >= 0 && lockSlot(this.#lib, this.#fd, slot, this.#ctx);
  }

  /** Whether another process holds owner slot `slot`; false once this process closed its descriptor. */
  held(slot: number): boolean {
    return this.#fd >= 0 && slotHeld(this.#lib, this.#fd, slot, this.#ctx);
  }

  /** Closes the descriptor, giving up this process's owner slot (the mapping stays). Idempotent. */
  closeFd(): void {
    if (this.#fd < 0) return;
    this.#lib.fn.close(this.#fd);
    this.#fd = -1;
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
   * Lets go of the shared memory (and closes the descriptor). The address range is first replaced by private zero pages, so a
   * view that is still used by mistake reads zeros (and its waits time out) instead of crashing the
   * process; the range itself is unmapped once the garbage collector has dropped {@link buffer}
   * (unless the segment was placed over memory someone else owns, which keeps the zero pages).
   */
  unmap(): void {
    this.closeFd();
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
