/**
 * @module
 * A small registration cache: large buffers that collectives reuse call by call are mapped once with
 * `ucp_mem_map` and the handle passed with every send and receive, so transports that need registered
 * memory (verbs) do not register per message. Which buffers are large enough is the channel's call.
 */

import { TransportError } from "../../errors.ts";
import { statusString, UCS_OK } from "./status.ts";
import { addr, MEM_MAP_FIELD, struct } from "./structs.ts";
import type { UcxWorker } from "./worker.ts";

interface Entry {
  /** Held so the mapped pages stay the buffer's for as long as they are registered. */
  readonly buffer: ArrayBuffer;
  readonly memh: Deno.PointerObject;
  /** Requests in flight that use the handle; an entry in use is never evicted. */
  uses: number;
}

/** Maps whole ArrayBuffers, least recently used evicted beyond `capacity` entries. */
export class RegistrationCache {
  readonly #w: UcxWorker;
  readonly #capacity: number;
  readonly #entries = new Map<ArrayBuffer, Entry>();
  /** Registrations made (for tests and reports). */
  registrations = 0;
  /** Lookups served from the cache. */
  hits = 0;

  /** A cache of at most `capacity` registrations on worker `w`'s context. */
  constructor(w: UcxWorker, capacity = 16) {
    this.#w = w;
    this.#capacity = capacity;
  }

  /**
   * The memory handle covering `view`'s whole ArrayBuffer, registering it on first use. Returns null
   * when UCX refuses (the transfer then goes without a handle, as UCX registers on its own). Every
   * non-null result must be given back with {@link release} once its request has completed.
   */
  handle(view: Uint8Array): Deno.PointerObject | null {
    const buffer = view.buffer;
    if (!(buffer instanceof ArrayBuffer) || buffer.resizable) return null;
    const hit = this.#entries.get(buffer);
    if (hit) {
      this.hits++;
      // Re-insert: Map iteration order is insertion order, so the first key is the least recent.
      this.#entries.delete(buffer);
      this.#entries.set(buffer, hit);
      hit.uses++;
      return hit.memh;
    }
    const m = this.#w.layout.memMapParams;
    const p = struct(m.size);
    const whole = new Uint8Array(buffer);
    p.view.setBigUint64(m.fieldMask, MEM_MAP_FIELD.ADDRESS | MEM_MAP_FIELD.LENGTH, true);
    p.view.setBigUint64(m.address, addr(Deno.UnsafePointer.of(whole)), true);
    p.view.setBigUint64(m.length, BigInt(buffer.byteLength), true);
    const out = new BigUint64Array(1);
    if (this.#w.lib.ucp.ucp_mem_map(this.#w.context, p.bytes, out) !== UCS_OK) return null;
    const memh = Deno.UnsafePointer.create(out[0])!;
    this.registrations++;
    this.#entries.set(buffer, { buffer, memh, uses: 1 });
    for (const [key, e] of this.#entries) {
      if (this.#entries.size <= this.#capacity) break;
      if (e.uses > 0) continue;
      this.#entries.delete(key);
      this.#unmap(e);
    }
    return memh;
  }

  /** Gives back a handle {@link handle} returned for `view`, once its request completed. */
  release(view: Uint8Array): void {
    const e = this.#entries.get(view.buffer as ArrayBuffer);
    if (e && e.uses > 0) e.uses--;
  }

  /** Number of buffers registered now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Unmaps everything (call once no request uses the handles any more). */
  clear(): void {
    for (const e of this.#entries.values()) this.#unmap(e);
    this.#entries.clear();
  }

  #unmap(e: Entry): void {
    const st = this.#w.lib.ucp.ucp_mem_unmap(this.#w.context, e.memh);
    if (st !== UCS_OK) {
      throw new TransportError(`ucp_mem_unmap: ${statusString(this.#w.lib, st)}`, { op: "ucx.memUnmap" });
    }
  }
}
