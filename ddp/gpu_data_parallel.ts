/**
 * @module
 * Data-parallel training of a GPU model whose gradients live in one flat GpuTensor ({@link GpuMlp}):
 * parameters broadcast from rank 0 at the start, then after each backward the gradient buffer is
 * averaged across ranks in buckets (views of it, last layers first, each one GPU allReduce: CUDA IPC
 * on one host, staged otherwise). The CPU DistributedDataParallel (`distributed.ts`) is separate.
 */

import type { ProcessGroup } from "../collectives/process_group.ts";
import { ReduceOp } from "../collectives/dtype.ts";
import { releaseIpcMappings } from "../collectives/allreduce_gpu_ipc.ts";
import { InvalidArgumentError } from "../errors.ts";
import { type GpuTensor, synchronize } from "../gpu/mod.ts";

/** What {@link GpuDataParallel} needs of a model: flat value and gradient buffers. */
export interface FlatGpuModel {
  /** Every parameter value, in one f32 buffer. */
  readonly flatData: GpuTensor;
  /** Every gradient, same layout. */
  readonly flatGrad: GpuTensor;
}

/** Options of {@link GpuDataParallel.create}. */
export interface GpuDataParallelOptions {
  /** Bytes per gradient bucket (default 25 MiB, as torch's DDP). */
  bucketBytes?: number;
  /** Keep peers' gradient buffers mapped between steps on the IPC path (default true). */
  keepMapped?: boolean;
}

/** Averages a flat GPU gradient across the ranks of a group. */
export class GpuDataParallel {
  /** The group. */
  readonly pg: ProcessGroup;
  /** The model. */
  readonly model: FlatGpuModel;
  readonly #buckets: GpuTensor[];
  readonly #keepMapped: boolean;

  private constructor(pg: ProcessGroup, model: FlatGpuModel, buckets: GpuTensor[], keepMapped: boolean) {
    this.pg = pg;
    this.model = model;
    this.#buckets = buckets;
    this.#keepMapped = keepMapped;
  }

  /** Wraps `model`: broadcasts rank 0's parameters so every rank starts equal. */
  static async create(
    model: FlatGpuModel,
    pg: ProcessGroup,
    opts: GpuDataParallelOptions = {},
  ): Promise<GpuDataParallel> {
    const g = model.flatGrad;
    if (g.dtype !== "f32" || model.flatData.length !== g.length) {
      throw new InvalidArgumentError("GpuDataParallel needs f32 flat buffers of one length", {
        op: "GpuDataParallel",
      });
    }
    synchronize(g.device);
    await pg.broadcast(model.flatData, { root: 0 });
    const per = Math.max(1, Math.floor((opts.bucketBytes ?? 25 << 20) / 4));
    const buckets: GpuTensor[] = [];
    // Last elements first: the last layers' gradients are final first in backward.
    for (let end = g.length; end > 0; end -= per) {
      const start = Math.max(0, end - per);
      buckets.push(g.view(start, end - start));
    }
    return new GpuDataParallel(pg, model, buckets, opts.keepMapped ?? true);
  }

  /** Averages the gradients (call after backward, before the optimizer step). */
  async finishBackward(): Promise<void> {
    const works = this.#buckets.map((b) =>
      this.pg.allReduce(b, { op: ReduceOp.AVG, async: true, gpu: { keepMapped: this.#keepMapped } })
    );
    for (const w of works) await w.wait();
  }

  /** Unmaps peers' buffers (every rank, before any frees its model). */
  async close(): Promise<void> {
    releaseIpcMappings();
    await this.pg.barrier();
  }
}
