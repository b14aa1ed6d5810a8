/**
 * @module
 * The CUDA driver API for choir: init, devices, primary contexts, device and pinned memory, copies,
 * streams, events, PTX modules, kernel launch and IPC handles. Every CUresult is checked and turned
 * into a CudaError naming the call. Tensors (`tensor.ts`) and cuBLAS (`cublas.ts`) build on this.
 *
 * All calls run on the JS thread: a CUDA context is current per OS thread, and FFI `nonblocking` calls
 * run on a pool thread that has none. A Worker is another thread, so it sets its own context (this
 * module keeps its state per realm, so a Worker's copy does that by itself).
 */

import { CudaError, InvalidArgumentError } from "../errors.ts";
import { CUDA_SYMBOLS, type CudaSymbols, cudaSymbols } from "./cuda_lib.ts";

/** CUDA_SUCCESS. */
const SUCCESS = 0;
/** CUDA_ERROR_NOT_READY: an event or stream still has work queued (not an error for queries). */
const NOT_READY = 600;

const enc = new TextEncoder();
const ptrOut = () => new BigUint64Array(1);
const ptrOf = (v: bigint): Deno.PointerValue => Deno.UnsafePointer.create(v);

function cstring(p: bigint): string {
  const ptr = ptrOf(p);
  return ptr === null ? "?" : Deno.UnsafePointerView.getCString(ptr);
}

/** The name and description the driver gives a CUresult (`CUDA_ERROR_...`, or `CUresult <n>`). */
export function cudaErrorText(code: number): { name: string; description: string } {
  const cu = cudaSymbols();
  const n = ptrOut(), s = ptrOut();
  const name = cu.cuGetErrorName(code, n) === SUCCESS && n[0] !== 0n ? cstring(n[0]) : `CUresult ${code}`;
  const description = cu.cuGetErrorString(code, s) === SUCCESS && s[0] !== 0n
    ? cstring(s[0])
    : "unknown error";
  return { name, description };
}

/** Throws a CudaError for `call` unless `code` is CUDA_SUCCESS. `detail` says what was asked. */
export function check(call: string, code: number, detail = ""): void {
  if (code === SUCCESS) return;
  const { name, description } = cudaErrorText(code);
  throw new CudaError(call, code, name, description, detail);
}

let initialized = false;

/** The driver, initialised once (`cuInit(0)`). Throws LibraryUnavailableError without a driver. */
export function driver(): CudaSymbols {
  const cu = cudaSymbols();
  if (!initialized) {
    check("cuInit", cu.cuInit(0));
    initialized = true;
  }
  return cu;
}

/**
 * Whether CUDA can be used here: the driver library opens, `cuInit` succeeds and at least one device
 * is visible. Never throws.
 */
export function cudaAvailable(): boolean {
  try {
    return deviceCount() > 0;
  } catch {
    return false;
  }
}

/** The driver's CUDA version as `major.minor` (12080 -> "12.8"). */
export function driverVersion(): string {
  const out = new Int32Array(1);
  check("cuDriverGetVersion", driver().cuDriverGetVersion(out));
  return `${Math.floor(out[0] / 1000)}.${(out[0] % 1000) / 10}`;
}

/** The number of visible CUDA devices. */
export function deviceCount(): number {
  const out = new Int32Array(1);
  check("cuDeviceGetCount", driver().cuDeviceGetCount(out));
  return out[0];
}

/** `CUdevice_attribute` values choir reads (`cuda.h`). */
export const DeviceAttribute = {
  /** CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT */
  multiprocessorCount: 16,
  /** CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING (IPC needs it) */
  unifiedAddressing: 41,
  /** CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */
  computeCapabilityMajor: 75,
  /** CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR */
  computeCapabilityMinor: 76,
  /** CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED */
  ipcEventSupported: 125,
} as const;

/** What {@link deviceInfo} reports about a device. */
export interface DeviceInfo {
  /** Device ordinal. */
  ordinal: number;
  /** Marketing name (`NVIDIA H100 80GB HBM3`). */
  name: string;
  /** Compute capability, `major.minor`. */
  computeCapability: string;
  /** Streaming multiprocessors. */
  multiprocessors: number;
  /** Total memory in bytes. */
  totalMemory: number;
  /** PCI bus id (`0000:17:00.0`): equal ids are the same GPU, whatever the ordinals. */
  pciBusId: string;
  /** Whether CUDA IPC of memory (unified addressing) and of events is supported. */
  ipc: boolean;
}

function device(ordinal: number): number {
  const out = new Int32Array(1);
  check("cuDeviceGet", driver().cuDeviceGet(out, ordinal), `ordinal ${ordinal} of ${deviceCount()}`);
  return out[0];
}

function attribute(dev: number, attr: number): number {
  const out = new Int32Array(1);
  check("cuDeviceGetAttribute", driver().cuDeviceGetAttribute(out, attr, dev), `attribute ${attr}`);
  return out[0];
}

/** Name, capability, memory, PCI id and IPC support of device `ordinal`. */
export function deviceInfo(ordinal = 0): DeviceInfo {
  const cu = driver(), dev = device(ordinal);
  const name = new Uint8Array(256), bus = new Uint8Array(64), mem = ptrOut();
  check("cuDeviceGetName", cu.cuDeviceGetName(name, name.length, dev));
  check("cuDeviceGetPCIBusId", cu.cuDeviceGetPCIBusId(bus, bus.length, dev));
  check("cuDeviceTotalMem_v2", cu.cuDeviceTotalMem_v2(mem, dev));
  const text = (b: Uint8Array) => new TextDecoder().decode(b.subarray(0, Math.max(0, b.indexOf(0))));
  return {
    ordinal,
    name: text(name),
    computeCapability: `${attribute(dev, DeviceAttribute.computeCapabilityMajor)}.${
      attribute(dev, DeviceAttribute.computeCapabilityMinor)
    }`,
    multiprocessors: attribute(dev, DeviceAttribute.multiprocessorCount),
    totalMemory: Number(mem[0]),
    pciBusId: text(bus),
    ipc: attribute(dev, DeviceAttribute.unifiedAddressing) === 1 &&
      attribute(dev, DeviceAttribute.ipcEventSupported) === 1,
  };
}

const contexts = new Map<number, Deno.PointerValue>();
let current = -1;

/**
 * Makes device `ordinal`'s primary context current on this thread (retaining it the first time).
 * Every function here taking a `device` calls it, so mixing devices in one process is safe.
 */
export function useDevice(ordinal = 0): void {
  if (current === ordinal) return;
  const cu = driver();
  let ctx = contexts.get(ordinal);
  if (ctx === undefined) {
    const out = ptrOut();
    check("cuDevicePrimaryCtxRetain", cu.cuDevicePrimaryCtxRetain(out, device(ordinal)), `device ${ordinal}`);
    ctx = ptrOf(out[0]);
    contexts.set(ordinal, ctx);
  }
  check("cuCtxSetCurrent", cu.cuCtxSetCurrent(ctx), `device ${ordinal}`);
  current = ordinal;
}

/** Releases every primary context this thread retained (after freeing what lives in them). */
export function releaseDevices(): void {
  if (contexts.size === 0) return;
  const cu = driver();
  for (const ordinal of contexts.keys()) {
    check("cuDevicePrimaryCtxRelease_v2", cu.cuDevicePrimaryCtxRelease_v2(device(ordinal)));
  }
  contexts.clear();
  current = -1;
}

/** Waits for all work queued on device `ordinal`. */
export function synchronize(ordinal = 0): void {
  useDevice(ordinal);
  check("cuCtxSynchronize", driver().cuCtxSynchronize());
}

/** Free and total device memory of `ordinal`, in bytes. */
export function memoryInfo(ordinal = 0): { free: number; total: number } {
  useDevice(ordinal);
  const f = ptrOut(), t = ptrOut();
  check("cuMemGetInfo_v2", driver().cuMemGetInfo_v2(f, t));
  return { free: Number(f[0]), total: Number(t[0]) };
}

// ---------------------------------------------------------------------------------------------- memory

/** A device address (`CUdeviceptr`). */
export type DevicePtr = bigint;

/** Allocates `bytes` of device memory on `ordinal` (at least 1 byte; 256-byte aligned). */
export function memAlloc(bytes: number, ordinal = 0): DevicePtr {
  useDevice(ordinal);
  const out = ptrOut();
  check(
    "cuMemAlloc_v2",
    driver().cuMemAlloc_v2(out, BigInt(Math.max(1, bytes))),
    `${bytes} bytes on device ${ordinal}`,
  );
  return out[0];
}

/** Frees device memory from {@link memAlloc}. */
export function memFree(ptr: DevicePtr, ordinal = 0): void {
  useDevice(ordinal);
  check("cuMemFree_v2", driver().cuMemFree_v2(ptr));
}

/** The allocation holding `ptr`: its base address and size (IPC exports bases only). */
export function addressRange(ptr: DevicePtr, ordinal = 0): { base: DevicePtr; size: number } {
  useDevice(ordinal);
  const b = ptrOut(), s = ptrOut();
  check("cuMemGetAddressRange_v2", driver().cuMemGetAddressRange_v2(b, s, ptr));
  return { base: b[0], size: Number(s[0]) };
}

/** Sets `bytes` bytes at `ptr` to `value` (on `stream` when given, else synchronously). */
export function memset8(ptr: DevicePtr, value: number, bytes: number, ordinal = 0, stream?: Stream): void {
  useDevice(ordinal);
  if (stream) check("cuMemsetD8Async", driver().cuMemsetD8Async(ptr, value, BigInt(bytes), stream.handle));
  else check("cuMemsetD8_v2", driver().cuMemsetD8_v2(ptr, value, BigInt(bytes)));
}

/** CU_MEMHOSTALLOC_PORTABLE: pinned memory usable from every context. */
const HOSTALLOC_PORTABLE = 1;

/**
 * Page-locked host memory (`cuMemHostAlloc`), the only host memory async copies overlap with. `bytes`
 * aliases it with no copy; keep the HostBuffer referenced while copies into or out of it run.
 */
export class HostBuffer {
  /** The pinned region as a JS ArrayBuffer (no copy). */
  readonly bytes: ArrayBuffer;
  /** Its size in bytes. */
  readonly byteLength: number;
  #ptr: Deno.PointerValue;

  /** Allocates `byteLength` pinned bytes (portable across contexts) with device `ordinal` current. */
  constructor(byteLength: number, ordinal = 0) {
    useDevice(ordinal);
    const out = ptrOut();
    check(
      "cuMemHostAlloc",
      driver().cuMemHostAlloc(out, BigInt(Math.max(1, byteLength)), HOSTALLOC_PORTABLE),
      `${byteLength} bytes`,
    );
    this.#ptr = ptrOf(out[0]);
    this.byteLength = byteLength;
    this.bytes = Deno.UnsafePointerView.getArrayBuffer(this.#ptr!, Math.max(1, byteLength));
  }

  /** The raw pointer `offset` bytes in (for async copies). Throws after {@link free}. */
  pointer(offset = 0): Deno.PointerValue {
    if (this.#ptr === null) {
      throw new InvalidArgumentError("HostBuffer used after free", { op: "HostBuffer" });
    }
    if (offset < 0 || offset > this.byteLength) {
      throw new InvalidArgumentError(`offset ${offset} outside ${this.byteLength} pinned bytes`, {
        op: "HostBuffer",
      });
    }
    return offset === 0 ? this.#ptr : Deno.UnsafePointer.offset(this.#ptr!, offset);
  }

  /** Frees the pinned memory (`cuMemFreeHost`); the `bytes` view must not be used afterwards. */
  free(): void {
    if (this.#ptr === null) return;
    check("cuMemFreeHost", driver().cuMemFreeHost(this.#ptr));
    this.#ptr = null;
  }

  /** Same as {@link free}, for `using`. */
  [Symbol.dispose](): void {
    this.free();
  }
}

// ---------------------------------------------------------------------------------------------- copies

/** Copies `bytes` from host `src` to device `dst` and waits (pageable memory is fine). */
export function copyHtoD(dst: DevicePtr, src: ArrayBufferView, bytes = src.byteLength, ordinal = 0): void {
  if (bytes > src.byteLength) throw new InvalidArgumentError(`copy of ${bytes} bytes from ${src.byteLength}`);
  useDevice(ordinal);
  check("cuMemcpyHtoD_v2", driver().cuMemcpyHtoD_v2(dst, asBytes(src), BigInt(bytes)), `${bytes} bytes`);
}

/** Copies `bytes` from device `src` to host `dst` and waits. */
export function copyDtoH(dst: ArrayBufferView, src: DevicePtr, bytes = dst.byteLength, ordinal = 0): void {
  if (bytes > dst.byteLength) throw new InvalidArgumentError(`copy of ${bytes} bytes into ${dst.byteLength}`);
  useDevice(ordinal);
  check("cuMemcpyDtoH_v2", driver().cuMemcpyDtoH_v2(asBytes(dst), src, BigInt(bytes)), `${bytes} bytes`);
}

/** Copies `bytes` between device addresses (on `stream` when given, else synchronously). */
export function copyDtoD(dst: DevicePtr, src: DevicePtr, bytes: number, ordinal = 0, stream?: Stream): void {
  useDevice(ordinal);
  if (stream) {
    check("cuMemcpyDtoDAsync_v2", driver().cuMemcpyDtoDAsync_v2(dst, src, BigInt(bytes), stream.handle));
  } else check("cuMemcpyDtoD_v2", driver().cuMemcpyDtoD_v2(dst, src, BigInt(bytes)), `${bytes} bytes`);
}

/** Queues a copy of `bytes` from pinned `src` (at `srcOffset`) to device `dst` on `stream`. */
export function copyHtoDAsync(
  dst: DevicePtr,
  src: HostBuffer,
  srcOffset: number,
  bytes: number,
  stream: Stream,
): void {
  inside(src, srcOffset, bytes);
  useDevice(stream.device);
  check(
    "cuMemcpyHtoDAsync_v2",
    driver().cuMemcpyHtoDAsync_v2(dst, src.pointer(srcOffset), BigInt(bytes), stream.handle),
    `${bytes} bytes`,
  );
}

/** Queues a copy of `bytes` from device `src` into pinned `dst` (at `dstOffset`) on `stream`. */
export function copyDtoHAsync(
  dst: HostBuffer,
  dstOffset: number,
  src: DevicePtr,
  bytes: number,
  stream: Stream,
): void {
  inside(dst, dstOffset, bytes);
  useDevice(stream.device);
  check(
    "cuMemcpyDtoHAsync_v2",
    driver().cuMemcpyDtoHAsync_v2(dst.pointer(dstOffset), src, BigInt(bytes), stream.handle),
    `${bytes} bytes`,
  );
}

function inside(b: HostBuffer, offset: number, bytes: number): void {
  if (offset < 0 || bytes < 0 || offset + bytes > b.byteLength) {
    throw new InvalidArgumentError(
      `${bytes} bytes at ${offset} exceed the ${b.byteLength}-byte pinned buffer`,
      {
        op: "copy",
      },
    );
  }
}

function asBytes(v: ArrayBufferView): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

// -------------------------------------------------------------------------------------- streams, events

/**
 * Polls `ready` until it is true: spins on it for up to 1 ms (GPU work is often that short, and a timer
 * turn can cost milliseconds), then yields to the event loop between bursts of 0.2 ms.
 */
async function poll(ready: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const spin = (ms: number) => {
    const until = performance.now() + ms;
    do if (ready()) return true; while (performance.now() < until);
    return false;
  };
  if (spin(1)) return;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    await new Promise((r) => setTimeout(r, 0));
    if (spin(0.2)) return;
    if (performance.now() > deadline) {
      throw new CudaError(what, NOT_READY, "CUDA_ERROR_NOT_READY", `still running after ${timeoutMs} ms`);
    }
  }
}

/** CU_STREAM_NON_BLOCKING: no implicit synchronisation with the legacy default stream. */
const STREAM_NON_BLOCKING = 1;

/** A CUDA stream of one device: work queued on it runs in order. */
export class Stream {
  /** The device the stream belongs to. */
  readonly device: number;
  #handle: Deno.PointerValue;

  /** A new non-blocking stream on device `ordinal`. */
  constructor(ordinal = 0) {
    useDevice(ordinal);
    const out = ptrOut();
    check("cuStreamCreate", driver().cuStreamCreate(out, STREAM_NON_BLOCKING));
    this.device = ordinal;
    this.#handle = ptrOf(out[0]);
  }

  /** The CUstream handle (for cuBLAS and launches). */
  get handle(): Deno.PointerValue {
    if (this.#handle === null) throw new InvalidArgumentError("stream used after destroy", { op: "Stream" });
    return this.#handle;
  }

  /** Blocks this thread until the stream's work is done. */
  synchronize(): void {
    useDevice(this.device);
    check("cuStreamSynchronize", driver().cuStreamSynchronize(this.handle));
  }

  /** Whether all queued work is done (cuStreamQuery; NOT_READY is false, other codes throw). */
  query(): boolean {
    useDevice(this.device);
    const r = driver().cuStreamQuery(this.handle);
    if (r === NOT_READY) return false;
    check("cuStreamQuery", r);
    return true;
  }

  /** Resolves when the queued work is done, without blocking the event loop. */
  done(timeoutMs = 300_000): Promise<void> {
    return poll(() => this.query(), "cuStreamQuery", timeoutMs);
  }

  /** Makes later work on this stream wait for `event` (which may be recorded on another stream). */
  waitEvent(event: CudaEvent): void {
    useDevice(this.device);
    check("cuStreamWaitEvent", driver().cuStreamWaitEvent(this.handle, event.handle, 0));
  }

  /** Destroys the stream (queued work still completes). */
  destroy(): void {
    if (this.#handle === null) return;
    useDevice(this.device);
    check("cuStreamDestroy_v2", driver().cuStreamDestroy_v2(this.#handle));
    this.#handle = null;
  }

  /** Same as {@link destroy}, for `using`. */
  [Symbol.dispose](): void {
    this.destroy();
  }
}

/** CUevent_flags (`cuda.h`). */
export const EventFlags = {
  /** CU_EVENT_DEFAULT: timing enabled. */
  default: 0,
  /** CU_EVENT_DISABLE_TIMING: cheaper; required for interprocess events. */
  disableTiming: 2,
  /** CU_EVENT_INTERPROCESS (with disableTiming): the event can be exported with an IPC handle. */
  interprocess: 4,
} as const;

/** A CUDA event: a point in a stream to wait on, or to time between. */
export class CudaEvent {
  /** The device whose context owns the event. */
  readonly device: number;
  #handle: Deno.PointerValue;

  /** A new event on device `ordinal` (`flags` from {@link EventFlags}); or wraps an opened IPC event. */
  constructor(ordinal = 0, flags: number = EventFlags.default, handle?: Deno.PointerValue) {
    this.device = ordinal;
    if (handle !== undefined) {
      this.#handle = handle;
      return;
    }
    useDevice(ordinal);
    const out = ptrOut();
    check("cuEventCreate", driver().cuEventCreate(out, flags), `flags ${flags}`);
    this.#handle = ptrOf(out[0]);
  }

  /** The CUevent handle. */
  get handle(): Deno.PointerValue {
    if (this.#handle === null) {
      throw new InvalidArgumentError("event used after destroy", { op: "CudaEvent" });
    }
    return this.#handle;
  }

  /** Records the event at the current end of `stream` (the legacy default stream when omitted). */
  record(stream?: Stream): void {
    useDevice(this.device);
    check("cuEventRecord", driver().cuEventRecord(this.handle, stream ? stream.handle : null));
  }

  /** Blocks until the recorded work is done. */
  synchronize(): void {
    useDevice(this.device);
    check("cuEventSynchronize", driver().cuEventSynchronize(this.handle));
  }

  /** Whether the recorded work is done. */
  query(): boolean {
    useDevice(this.device);
    const r = driver().cuEventQuery(this.handle);
    if (r === NOT_READY) return false;
    check("cuEventQuery", r);
    return true;
  }

  /** Resolves when the recorded work is done, without blocking the event loop. */
  done(timeoutMs = 300_000): Promise<void> {
    return poll(() => this.query(), "cuEventQuery", timeoutMs);
  }

  /** Milliseconds from `start` to this event (both recorded and complete; timing enabled). */
  elapsedSince(start: CudaEvent): number {
    useDevice(this.device);
    const cu = driver(), out = new Float32Array(1);
    if (cu.cuEventElapsedTime_v2) {
      check("cuEventElapsedTime_v2", cu.cuEventElapsedTime_v2(out, start.handle, this.handle));
    } else if (cu.cuEventElapsedTime) {
      check("cuEventElapsedTime", cu.cuEventElapsedTime(out, start.handle, this.handle));
    } else throw new InvalidArgumentError("the driver exports no cuEventElapsedTime", { op: "CudaEvent" });
    return out[0];
  }

  /** The 64-byte IPC handle of an event created with `interprocess | disableTiming`. */
  ipcHandle(): Uint8Array {
    useDevice(this.device);
    const out = new Uint8Array(IPC_HANDLE_SIZE);
    check("cuIpcGetEventHandle", driver().cuIpcGetEventHandle(out, this.handle));
    return out;
  }

  /** Destroys the event. */
  destroy(): void {
    if (this.#handle === null) return;
    useDevice(this.device);
    check("cuEventDestroy_v2", driver().cuEventDestroy_v2(this.#handle));
    this.#handle = null;
  }

  /** Same as {@link destroy}, for `using`. */
  [Symbol.dispose](): void {
    this.destroy();
  }
}

// ------------------------------------------------------------------------------------ modules, launches

/** CUjit_option values for the JIT logs (`cuda.h`). */
const JIT = { infoLog: 3, infoLogSize: 4, errorLog: 5, errorLogSize: 6, logVerbose: 12 } as const;
const LOG_BYTES = 16 * 1024;

/** A kernel parameter with its C type (the size the kernel's PTX signature declares). */
export type KernelArg =
  | { u64: bigint }
  | { u32: number }
  | { i32: number }
  | { f32: number }
  | { f64: number }
  /** A struct passed by value: its bytes, laid out as the kernel declares it. */
  | { bytes: Uint8Array };

/** Launch geometry and stream of {@link CudaFunction.launch}. */
export interface LaunchConfig {
  /** Blocks in x (y and z are 1 unless given). */
  grid: number | readonly [number, number, number];
  /** Threads per block in x (y and z are 1 unless given). */
  block: number | readonly [number, number, number];
  /** Dynamic shared memory in bytes (default 0). */
  sharedBytes?: number;
  /** The stream (default: the legacy default stream of the current context). */
  stream?: Stream;
}

/** A kernel of a loaded module. */
export class CudaFunction {
  /** The kernel's name in the PTX. */
  readonly name: string;
  /** The device of its module. */
  readonly device: number;
  readonly #handle: Deno.PointerValue;
  // Keeps the module referenced while a function of it is.
  readonly #module: CudaModule;
  #lastArgs: Uint8Array | null = null;

  /** Wraps a CUfunction; use {@link CudaModule.function}. */
  constructor(module: CudaModule, name: string, handle: Deno.PointerValue) {
    this.#module = module;
    this.name = name;
    this.device = module.device;
    this.#handle = handle;
  }

  /**
   * Launches the kernel with `args` in the order and sizes of its parameters. Values are packed into
   * one block of 8-byte-aligned slots and passed as `kernelParams` (an array of pointers into it); the
   * driver copies them at launch, so nothing needs to outlive this call.
   */
  launch(cfg: LaunchConfig, args: readonly KernelArg[]): void {
    this.#module.assertLoaded();
    // One storage block, each value in its own 8-byte-aligned slot (a struct takes its size rounded up).
    const offsets: number[] = [];
    let size = 0;
    for (const a of args) {
      offsets.push(size);
      size += "bytes" in a ? Math.ceil(a.bytes.length / 8) * 8 : 8;
    }
    const storage = new ArrayBuffer(Math.max(8, size));
    const dv = new DataView(storage);
    args.forEach((a, i) => {
      const o = offsets[i];
      if ("u64" in a) dv.setBigUint64(o, a.u64, true);
      else if ("u32" in a) dv.setUint32(o, a.u32 >>> 0, true);
      else if ("i32" in a) dv.setInt32(o, a.i32, true);
      else if ("f32" in a) dv.setFloat32(o, a.f32, true);
      else if ("f64" in a) dv.setFloat64(o, a.f64, true);
      else new Uint8Array(storage, o, a.bytes.length).set(a.bytes);
    });
    const slots = new Uint8Array(storage);
    const base = Deno.UnsafePointer.value(Deno.UnsafePointer.of(slots));
    const params = new BigUint64Array(Math.max(1, args.length));
    for (let i = 0; i < args.length; i++) params[i] = base + BigInt(offsets[i]);
    const [gx, gy, gz] = dims(cfg.grid), [bx, by, bz] = dims(cfg.block);
    useDevice(this.device);
    check(
      "cuLaunchKernel",
      driver().cuLaunchKernel(
        this.#handle,
        gx,
        gy,
        gz,
        bx,
        by,
        bz,
        cfg.sharedBytes ?? 0,
        cfg.stream ? cfg.stream.handle : null,
        params,
        null,
      ),
      `${this.name} grid ${gx}x${gy}x${gz} block ${bx}x${by}x${bz}`,
    );
    // The pointers in `params` point into `slots`: keep it referenced past the call.
    this.#lastArgs = slots;
  }
}

function dims(d: number | readonly [number, number, number]): [number, number, number] {
  const v: [number, number, number] = typeof d === "number" ? [d, 1, 1] : [d[0], d[1], d[2]];
  for (const x of v) {
    if (!(Number.isInteger(x) && x >= 1 && x <= 0x7fffffff)) {
      throw new InvalidArgumentError(`bad launch dimension ${x}`, { op: "cuLaunchKernel" });
    }
  }
  return v;
}

/** A module loaded from PTX text (JIT-compiled by the driver for the device). */
export class CudaModule {
  /** The device the module was loaded on. */
  readonly device: number;
  /** What the JIT wrote to its info log (empty when nothing). */
  readonly infoLog: string;
  #handle: Deno.PointerValue;
  readonly #functions = new Map<string, CudaFunction>();

  /**
   * JIT-compiles `ptx` on device `ordinal` (`cuModuleLoadDataEx`). On failure the CudaError carries
   * the JIT's error log, which names the line and what it could not compile.
   */
  constructor(ptx: string, ordinal = 0, label = "module") {
    useDevice(ordinal);
    this.device = ordinal;
    const image = enc.encode(ptx + "\0");
    const info = new Uint8Array(LOG_BYTES), error = new Uint8Array(LOG_BYTES);
    const options = new Int32Array([
      JIT.infoLog,
      JIT.infoLogSize,
      JIT.errorLog,
      JIT.errorLogSize,
      JIT.logVerbose,
    ]);
    // optionValues is a void*[]: pointers for the buffers, sizes and flags as integers in the slots.
    const values = new BigUint64Array([
      Deno.UnsafePointer.value(Deno.UnsafePointer.of(info)),
      BigInt(LOG_BYTES),
      Deno.UnsafePointer.value(Deno.UnsafePointer.of(error)),
      BigInt(LOG_BYTES),
      1n,
    ]);
    const out = ptrOut();
    const r = driver().cuModuleLoadDataEx(out, image, options.length, options, values);
    const text = (b: Uint8Array) => new TextDecoder().decode(b.subarray(0, Math.max(0, b.indexOf(0)))).trim();
    if (r !== SUCCESS) {
      check("cuModuleLoadDataEx", r, `${label}: JIT error log: ${text(error) || "(empty)"}`);
    }
    this.infoLog = text(info);
    this.#handle = ptrOf(out[0]);
  }

  /** The kernel `name` of this module (looked up once). */
  function(name: string): CudaFunction {
    let f = this.#functions.get(name);
    if (f) return f;
    this.assertLoaded();
    useDevice(this.device);
    const out = ptrOut();
    check(
      "cuModuleGetFunction",
      driver().cuModuleGetFunction(out, this.#handle, enc.encode(name + "\0")),
      name,
    );
    f = new CudaFunction(this, name, ptrOf(out[0]));
    this.#functions.set(name, f);
    return f;
  }

  /** Throws if the module was unloaded. */
  assertLoaded(): void {
    if (this.#handle === null) {
      throw new InvalidArgumentError("module used after unload", { op: "CudaModule" });
    }
  }

  /** Unloads the module. */
  unload(): void {
    if (this.#handle === null) return;
    useDevice(this.device);
    check("cuModuleUnload", driver().cuModuleUnload(this.#handle));
    this.#handle = null;
    this.#functions.clear();
  }
}

// ------------------------------------------------------------------------------------------------- IPC

/** Bytes of a CUipcMemHandle or CUipcEventHandle. */
export const IPC_HANDLE_SIZE = 64;
/** CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS: open memory of another GPU through peer access when needed. */
const IPC_LAZY_PEER = 1;

/**
 * The IPC handle of the allocation whose base is `base` (from {@link memAlloc}; export the base and
 * send the offset of a sub-range separately). Another process opens it with {@link ipcOpenMemHandle};
 * this process cannot open its own handle.
 */
export function ipcGetMemHandle(base: DevicePtr, ordinal = 0): Uint8Array {
  useDevice(ordinal);
  const out = new Uint8Array(IPC_HANDLE_SIZE);
  check("cuIpcGetMemHandle", driver().cuIpcGetMemHandle(out, base));
  return out;
}

/**
 * Maps another process's allocation into this one on device `ordinal` and returns its address here
 * (it differs from the exporter's). Each handle may be opened by one context per device per process;
 * close it with {@link ipcCloseMemHandle} before the exporter frees it.
 */
export function ipcOpenMemHandle(handle: Uint8Array, ordinal = 0): DevicePtr {
  if (handle.length !== IPC_HANDLE_SIZE) {
    throw new InvalidArgumentError(`an IPC handle has ${IPC_HANDLE_SIZE} bytes, got ${handle.length}`, {
      op: "cuIpcOpenMemHandle_v2",
    });
  }
  useDevice(ordinal);
  const out = ptrOut();
  check("cuIpcOpenMemHandle_v2", driver().cuIpcOpenMemHandle_v2(out, handle, IPC_LAZY_PEER));
  return out[0];
}

/** Unmaps memory opened with {@link ipcOpenMemHandle}. */
export function ipcCloseMemHandle(ptr: DevicePtr, ordinal = 0): void {
  useDevice(ordinal);
  check("cuIpcCloseMemHandle", driver().cuIpcCloseMemHandle(ptr));
}

/** Opens another process's interprocess event from its 64-byte handle. */
export function ipcOpenEventHandle(handle: Uint8Array, ordinal = 0): CudaEvent {
  useDevice(ordinal);
  const out = ptrOut();
  check("cuIpcOpenEventHandle", driver().cuIpcOpenEventHandle(out, handle));
  return new CudaEvent(ordinal, EventFlags.interprocess | EventFlags.disableTiming, ptrOf(out[0]));
}

/** The driver symbol table, for tools that check bindings against `cuda.h`. */
export const CUDA_SYMBOL_TABLE: typeof CUDA_SYMBOLS = CUDA_SYMBOLS;
