/**
 * @module
 * One UCP context and worker: creation with the tag and wakeup features, the worker address, endpoints
 * with peer-failure reporting, tag sends and receives, progress, the event fd, and orderly teardown.
 * Which requests are pending and when to wait is the engine's; framing is the channel's.
 */

import type { ErrorContext } from "../../errors.ts";
import { type UcxLib, ucxLib } from "./lib.ts";
import { check, decodeStatusPtr, type StatusPtr, UCS_OK } from "./status.ts";
import {
  addr,
  EP_CLOSE_FLAG_FORCE,
  EP_FIELD,
  ERR_HANDLING_MODE_NONE,
  ERR_HANDLING_MODE_PEER,
  FEATURE,
  layoutFor,
  OP_ATTR,
  PARAM_FIELD,
  struct,
  THREAD_MODE_SINGLE,
  type UcpLayout,
  WORKER_PARAM_FIELD_THREAD_MODE,
} from "./structs.ts";

const ERR_CB = { parameters: ["pointer", "pointer", "i32"], result: "void" } as const;

/** A UCP context plus one single-threaded worker, owned by one transport. */
export class UcxWorker {
  /** The loaded library. */
  readonly lib: UcxLib;
  /** The struct layout of this libucp version. */
  readonly layout: UcpLayout;
  /** `ucp_context_h`. */
  readonly context: Deno.PointerObject;
  /** `ucp_worker_h`. */
  readonly handle: Deno.PointerObject;
  /** The worker's event fd (readable when there is work for `progress`). */
  readonly efd: number;
  /** Called (inside `progress`) when UCX reports the endpoint to `peer` failed. */
  onPeerError: (peer: number, status: number) => void = () => {};
  readonly #rank: number;
  readonly #eps = new Map<number, Deno.PointerObject>();
  readonly #errCb: Deno.UnsafeCallback<typeof ERR_CB>;
  readonly #sendParam: { bytes: Uint8Array; view: DataView };
  readonly #recvParam: { bytes: Uint8Array; view: DataView };
  /** Where UCX may write tag info of immediate completions; lives as long as the worker. */
  readonly #recvInfo: Uint8Array;
  #destroyed = false;

  private constructor(
    lib: UcxLib,
    layout: UcpLayout,
    context: Deno.PointerObject,
    handle: Deno.PointerObject,
    efd: number,
    rank: number,
  ) {
    this.lib = lib;
    this.layout = layout;
    this.context = context;
    this.handle = handle;
    this.efd = efd;
    this.#rank = rank;
    // Runs inside ucp_worker_progress, which JS calls on its own thread: a plain callback suffices.
    this.#errCb = new Deno.UnsafeCallback(ERR_CB, (arg, _ep, status) => {
      const peer = Number(addr(arg)) - 1;
      if (peer >= 0) this.onPeerError(peer, status);
    });
    const rp = layout.requestParam;
    this.#sendParam = struct(rp.size);
    this.#recvParam = struct(rp.size);
    this.#recvInfo = new Uint8Array(layout.tagRecvInfo.size);
    // NO_IMM_CMPL: UCX 1.13 leaves tag info unset on immediate receive completion (openucx/ucx#9425),
    // so every receive returns a request that ucp_tag_recv_request_test then reports on.
    this.#recvParam.view.setUint32(rp.opAttrMask, OP_ATTR.RECV_INFO | OP_ATTR.NO_IMM_CMPL, true);
    this.#recvParam.view.setBigUint64(
      rp.recvInfo,
      addr(Deno.UnsafePointer.of(this.#recvInfo)),
      true,
    );
  }

  /**
   * Creates a context (reading UCX_* settings such as UCX_TLS and UCX_NET_DEVICES from the
   * environment, as UCX does) and a worker. Throws LibraryUnavailableError without libucp or for an
   * unverified version, TransportError when UCX refuses.
   */
  static open(rank: number, peers: number): UcxWorker {
    const lib = ucxLib();
    const layout = layoutFor(lib.version.major, lib.version.minor);
    const ctx: ErrorContext = { rank, op: "ucx.init" };
    const { ucp } = lib;
    const cfg = new BigUint64Array(1);
    check(lib, "ucp_config_read", ucp.ucp_config_read(null, null, cfg), ctx);
    const p = struct(layout.params.size);
    p.view.setBigUint64(layout.params.fieldMask, PARAM_FIELD.FEATURES | PARAM_FIELD.ESTIMATED_NUM_EPS, true);
    p.view.setBigUint64(layout.params.features, FEATURE.TAG | FEATURE.WAKEUP, true);
    p.view.setBigUint64(layout.params.estimatedNumEps, BigInt(Math.max(1, peers)), true);
    const ctxOut = new BigUint64Array(1);
    const cfgPtr = Deno.UnsafePointer.create(cfg[0]);
    const st = ucp.ucp_init_version(lib.version.major, lib.version.minor, p.bytes, cfgPtr, ctxOut);
    ucp.ucp_config_release(cfgPtr);
    check(lib, "ucp_init_version", st, ctx);
    const context = Deno.UnsafePointer.create(ctxOut[0])!;
    const w = struct(layout.workerParams.size);
    w.view.setBigUint64(layout.workerParams.fieldMask, WORKER_PARAM_FIELD_THREAD_MODE, true);
    w.view.setUint32(layout.workerParams.threadMode, THREAD_MODE_SINGLE, true);
    const wOut = new BigUint64Array(1);
    const ws = ucp.ucp_worker_create(context, w.bytes, wOut);
    if (ws !== UCS_OK) {
      ucp.ucp_cleanup(context);
      check(lib, "ucp_worker_create", ws, ctx);
    }
    const handle = Deno.UnsafePointer.create(wOut[0])!;
    const fd = new Int32Array(1);
    const es = ucp.ucp_worker_get_efd(handle, fd);
    if (es !== UCS_OK) {
      ucp.ucp_worker_destroy(handle);
      ucp.ucp_cleanup(context);
      check(lib, "ucp_worker_get_efd", es, ctx);
    }
    return new UcxWorker(lib, layout, context, handle, fd[0], rank);
  }

  /** This worker's address, to publish to the peers. */
  address(): Uint8Array {
    const out = new BigUint64Array(1);
    const len = new BigUint64Array(1);
    check(
      this.lib,
      "ucp_worker_get_address",
      this.lib.ucp.ucp_worker_get_address(this.handle, out, len),
      { rank: this.#rank, op: "ucx.address" },
    );
    const p = Deno.UnsafePointer.create(out[0])!;
    const bytes = new Uint8Array(Number(len[0]));
    Deno.UnsafePointerView.copyInto(p, bytes);
    this.lib.ucp.ucp_worker_release_address(this.handle, p);
    return bytes;
  }

  /**
   * Creates the endpoint to `peer` from its published address. With `reportFailure`, UCX reports a
   * failed peer to {@link onPeerError} (error mode PEER); UCX 1.13's shared-memory transports cannot,
   * so same-host peers go without it (the transport watches their process instead).
   */
  connect(peer: number, address: Uint8Array, reportFailure: boolean): void {
    const e = this.layout.epParams;
    const p = struct(e.size);
    p.view.setBigUint64(
      e.fieldMask,
      EP_FIELD.REMOTE_ADDRESS | EP_FIELD.ERR_HANDLING_MODE | EP_FIELD.ERR_HANDLER,
      true,
    );
    p.view.setBigUint64(e.address, addr(Deno.UnsafePointer.of(address)), true);
    p.view.setUint32(e.errMode, reportFailure ? ERR_HANDLING_MODE_PEER : ERR_HANDLING_MODE_NONE, true);
    p.view.setBigUint64(e.errHandlerCb, addr(this.#errCb.pointer), true);
    p.view.setBigUint64(e.errHandlerArg, BigInt(peer + 1), true);
    const out = new BigUint64Array(1);
    // `address` stays referenced by this frame until ucp_ep_create returns (UCX copies it).
    const st = this.lib.ucp.ucp_ep_create(this.handle, p.bytes, out);
    check(this.lib, "ucp_ep_create", st, { rank: this.#rank, peer, op: "ucx.connect" });
    this.#eps.set(peer, Deno.UnsafePointer.create(out[0])!);
  }

  /** Whether an endpoint to `peer` exists. */
  connected(peer: number): boolean {
    return this.#eps.has(peer);
  }

  /** The endpoint to `peer` (for reports). */
  endpoint(peer: number): Deno.PointerObject | undefined {
    return this.#eps.get(peer);
  }

  /** Starts a tag send of `buf` to `peer`; `memh` is a registration covering `buf`, if any. */
  send(peer: number, buf: Uint8Array, tag: bigint, memh: Deno.PointerValue = null): StatusPtr {
    const ep = this.#eps.get(peer)!;
    const rp = this.layout.requestParam;
    const v = this.#sendParam.view;
    v.setUint32(rp.opAttrMask, memh ? OP_ATTR.MEMH : 0, true);
    v.setBigUint64(rp.memh, addr(memh), true);
    return decodeStatusPtr(
      this.lib.ucp.ucp_tag_send_nbx(ep, buf, BigInt(buf.byteLength), tag, this.#sendParam.bytes),
    );
  }

  /** Posts a tag receive into `buf` for exactly `tag`; always returns a request (or an error). */
  recv(buf: Uint8Array, tag: bigint, memh: Deno.PointerValue = null, mask = 0xFFFFFFFFFFFFFFFFn): StatusPtr {
    const rp = this.layout.requestParam;
    const v = this.#recvParam.view;
    v.setUint32(rp.opAttrMask, OP_ATTR.RECV_INFO | OP_ATTR.NO_IMM_CMPL | (memh ? OP_ATTR.MEMH : 0), true);
    v.setBigUint64(rp.memh, addr(memh), true);
    return decodeStatusPtr(
      this.lib.ucp.ucp_tag_recv_nbx(
        this.handle,
        buf,
        BigInt(buf.byteLength),
        tag,
        mask,
        this.#recvParam.bytes,
      ),
    );
  }

  /** Runs UCX's progress once; returns the number of events processed. */
  progress(): number {
    return this.lib.ucp.ucp_worker_progress(this.handle);
  }

  /** Arms the event fd; `UCS_OK` means it is safe to sleep on it, `UCS_ERR_BUSY` means progress first. */
  arm(): number {
    return this.lib.ucp.ucp_worker_arm(this.handle);
  }

  /** Makes the event fd readable, waking a sleeping engine. */
  signal(): void {
    this.lib.ucp.ucp_worker_signal(this.handle);
  }

  /**
   * Closes every endpoint, then the worker. Endpoints to live peers are flushed first (a completed
   * eager send over TCP may still sit in UCX's queue); those to `dead` peers are closed by force,
   * since flushing to a dead peer could wait forever. The whole close is bounded to `boundMs`.
   * `beforeCleanup` runs between the worker's destruction and the context's (unmap memory there: no
   * request can use a registration any more, and the context is still alive). While closes are under
   * way it yields to the event loop between polls, so that the rest of the process (other groups,
   * the job's store when this rank serves it) goes on meanwhile.
   */
  async destroy(
    dead: ReadonlySet<number> = new Set(),
    boundMs = 2000,
    beforeCleanup: () => void = () => {},
  ): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const { ucp } = this.lib;
    const rp = this.layout.requestParam;
    const flush = struct(rp.size);
    const force = struct(rp.size);
    force.view.setUint32(rp.opAttrMask, OP_ATTR.FLAGS, true);
    force.view.setUint32(rp.flags, EP_CLOSE_FLAG_FORCE, true);
    const closing: Deno.PointerObject[] = [];
    for (const [peer, ep] of this.#eps) {
      const r = decodeStatusPtr(ucp.ucp_ep_close_nbx(ep, dead.has(peer) ? force.bytes : flush.bytes));
      if (r.kind === "request") closing.push(r.request);
    }
    this.#eps.clear();
    const until = performance.now() + boundMs;
    while (closing.length && performance.now() < until) {
      for (let i = 0; i < 64 && ucp.ucp_worker_progress(this.handle) !== 0; i++);
      for (let i = closing.length - 1; i >= 0; i--) {
        if (ucp.ucp_request_check_status(closing[i]) !== 1) {
          ucp.ucp_request_free(closing[i]);
          closing.splice(i, 1);
        }
      }
      // Issue 19: this loop used to hold the JS thread for up to the whole bound.
      if (closing.length) await new Promise<void>((r) => setTimeout(r, 0));
    }
    // Freeing an unfinished request is allowed: UCX releases it when (if) it completes.
    for (const r of closing) ucp.ucp_request_free(r);
    ucp.ucp_worker_destroy(this.handle);
    try {
      beforeCleanup();
    } finally {
      ucp.ucp_cleanup(this.context);
    }
    this.#errCb.close();
  }
}
