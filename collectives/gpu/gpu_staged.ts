/**
 * @module
 * Collectives on GpuTensors through pinned host memory, over any transport: the tensor moves to the
 * host in chunks on one stream while earlier chunks are on the wire and later ones come back on
 * another. The host collectives are the group's own; the CUDA IPC path is `allreduce_gpu_ipc.ts`.
 *
 * Order: every host collective of a call is issued at call time with its chunk's copy as its `after`
 * (see `HostGroup` in `gpu_route.ts`), so a GPU call keeps its place among the group's collectives
 * whatever the timing.
 * Cost: the host collective's, plus (chunk bytes / copy bandwidth) twice for the first and last chunk.
 */

import { ARRAY_TYPE, type CpuTensor, dtypeSize } from "../../dtype.ts";
import { copyDtoHAsync, copyHtoDAsync, CudaEvent, EventFlags, HostBuffer, Stream } from "../../gpu/cuda.ts";
import type { GpuTensor } from "../../gpu/tensor.ts";
import { InvalidArgumentError } from "../../errors.ts";
import { GPU_CHUNK_BYTES, type GpuOptions } from "./gpu_options.ts";

interface Streams {
  down: Stream;
  up: Stream;
}
const streams = new Map<number, Streams>();

function streamsOf(device: number): Streams {
  let s = streams.get(device);
  if (!s) streams.set(device, s = { down: new Stream(device), up: new Stream(device) });
  return s;
}

/** Pinned buffers kept for reuse (pinning is slow), by device and size class. */
const pool = new Map<string, HostBuffer[]>();
const POOL_KEEP = 4;

function sizeClass(bytes: number): number {
  let c = 64 << 10;
  while (c < bytes) c *= 2;
  return c;
}

function takePinned(bytes: number, device: number): HostBuffer {
  const c = sizeClass(bytes);
  return pool.get(`${device}:${c}`)?.pop() ?? new HostBuffer(c, device);
}

function givePinned(b: HostBuffer, device: number): void {
  const key = `${device}:${b.byteLength}`;
  const list = pool.get(key) ?? [];
  if (list.length < POOL_KEEP) {
    list.push(b);
    pool.set(key, list);
  } else b.free();
}

/** Frees the pinned staging buffers kept for reuse. */
export function releaseStagingBuffers(): void {
  for (const list of pool.values()) for (const b of list) b.free();
  pool.clear();
}

/** Resolves once the work queued on `stream` up to now is done (an event, polled without blocking). */
async function drained(stream: Stream | null, device: number): Promise<void> {
  const ev = new CudaEvent(device, EventFlags.disableTiming);
  try {
    ev.record(stream ?? undefined);
    await ev.done();
  } finally {
    ev.destroy();
  }
}

/** Makes `streams` wait for work already queued on the legacy default stream (kernels, cuBLAS, copies). */
function afterDefaultStream(device: number, ...targets: Stream[]): void {
  const ev = new CudaEvent(device, EventFlags.disableTiming);
  ev.record();
  for (const s of targets) s.waitEvent(ev);
  ev.destroy(); // released once the waits are done
}

/** A host collective on a staged chunk, issued at once and started when `ready` resolves. */
export type IssueChunk = (host: CpuTensor, elementOffset: number, ready: Promise<void>) => Promise<void>;

function chunkElements(t: GpuTensor, opts: GpuOptions | undefined): number {
  const bytes = opts?.chunkBytes ?? GPU_CHUNK_BYTES;
  if (!(Number.isInteger(bytes) && bytes > 0)) {
    throw new InvalidArgumentError(`gpu.chunkBytes must be a positive integer, got ${bytes}`, { op: "gpu" });
  }
  return Math.max(1, Math.floor(bytes / dtypeSize(t.dtype)));
}

/** Waits for every promise, then throws the first failure (so none is left unhandled). */
async function all(ps: Promise<void>[]): Promise<void> {
  const r = await Promise.allSettled(ps);
  const bad = r.find((x): x is PromiseRejectedResult => x.status === "rejected");
  if (bad) throw bad.reason;
}

/**
 * An element-wise collective (allReduce, broadcast, reduce) on `t` in chunks: each chunk goes down to
 * pinned memory when `down`, through `issue`, and back up when `up`. Three pinned slots rotate, so
 * copies in both directions overlap the host collectives of neighbouring chunks.
 */
export function stagedElementwise(
  t: GpuTensor,
  down: boolean,
  up: boolean,
  issue: IssueChunk,
  opts?: GpuOptions,
  after: Promise<void> | null = null,
): Promise<void> {
  const es = dtypeSize(t.dtype), per = chunkElements(t, opts);
  const chunks = Math.max(1, Math.ceil(t.length / per));
  const nSlots = Math.min(3, chunks);
  const { down: sDown, up: sUp } = streamsOf(t.device);
  afterDefaultStream(t.device, sDown, sUp);
  const slots = Array.from({ length: nSlots }, () => takePinned(Math.min(per, t.length) * es, t.device));
  const base = t.ptr;
  const finished: Promise<void>[] = [];
  for (let i = 0; i < chunks; i++) {
    const slot = slots[i % nSlots];
    const offset = i * per, count = Math.min(per, t.length - offset), bytes = count * es;
    const at = base + BigInt(offset * es);
    // A slot is free once the chunk before in it is done; the first ones wait for the earlier GPU
    // collectives on this memory (`after`), whose copies up may not have landed yet.
    const free = i >= nSlots ? finished[i - nSlots] : (after ?? Promise.resolve());
    const ready = free.then(() => {
      if (!down || bytes === 0) return;
      copyDtoHAsync(slot, 0, at, bytes, sDown);
      return drained(sDown, t.device);
    });
    const host = new ARRAY_TYPE[t.dtype](slot.bytes, 0, count);
    const done = issue(host, offset, ready).then(() => {
      if (!up || bytes === 0) return;
      copyHtoDAsync(at, slot, 0, bytes, sUp);
      return drained(sUp, t.device);
    });
    // Done only when its copy down is too: a slot goes back to the pool with no copy into it pending.
    finished.push(all([ready, done]));
  }
  return all(finished).finally(() => slots.forEach((s) => givePinned(s, t.device)));
}

/** One tensor of a whole-tensor staged call: copied down before, up after, or both. */
export interface StagedTensor {
  /** The device tensor. */
  tensor: GpuTensor;
  /** Copy it to the host before the host collective. */
  down: boolean;
  /** Copy the host result back into it afterwards. */
  up: boolean;
}

/**
 * A collective whose blocks do not line up chunk by chunk (allGather, reduceScatter, allToAll, gather,
 * scatter, send, recv): each tensor is staged whole in pinned memory, `issue` gets the host views in
 * the same order (issued at once, started when all copies down are done), and results go back up.
 */
export function stagedWhole(
  tensors: readonly StagedTensor[],
  issue: (hosts: CpuTensor[], ready: Promise<void>) => Promise<void>,
  after: Promise<void> | null = null,
): Promise<void> {
  const device = tensors[0].tensor.device;
  if (tensors.some((s) => s.tensor.device !== device)) {
    throw new InvalidArgumentError("the GPU tensors of one collective must be on one device", { op: "gpu" });
  }
  const { down: sDown, up: sUp } = streamsOf(device);
  afterDefaultStream(device, sDown, sUp);
  const bufs = tensors.map((s) => takePinned(s.tensor.byteLength, device));
  const hosts = tensors.map((s, i) => new ARRAY_TYPE[s.tensor.dtype](bufs[i].bytes, 0, s.tensor.length));
  const copyDown = () => {
    tensors.forEach((s, i) => {
      if (s.down && s.tensor.byteLength > 0) {
        copyDtoHAsync(bufs[i], 0, s.tensor.ptr, s.tensor.byteLength, sDown);
      }
    });
    return drained(sDown, device);
  };
  // After the earlier GPU collectives on this memory (their copies up may not have landed yet).
  const ready = after ? after.then(copyDown) : copyDown();
  const done = issue(hosts, ready).then(() => {
    tensors.forEach((s, i) => {
      if (s.up && s.tensor.byteLength > 0) copyHtoDAsync(s.tensor.ptr, bufs[i], 0, s.tensor.byteLength, sUp);
    });
    return drained(sUp, device);
  });
  return all([ready, done]).finally(() => bufs.forEach((b) => givePinned(b, device)));
}
