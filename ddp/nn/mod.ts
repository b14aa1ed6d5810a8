/**
 * @module
 * A small neural-network library for data-parallel training on the CPU: {@link Linear}, {@link ReLU},
 * {@link GELU}, {@link Sequential} (a DDP {@link Model}), {@link softmaxCrossEntropy}, {@link SGD} and
 * {@link AdamW}. Matrix products run through OpenBLAS `cblas_sgemm` by FFI, with a JS fallback. On a GPU,
 * {@link GpuMlp}, {@link softmaxCrossEntropyGpu} and {@link GpuAdamW} do the same through cuBLAS and PTX.
 *
 * @example
 * ```ts
 * import { AdamW, Linear, ReLU, Sequential, softmaxCrossEntropy } from "@choir/choir/ddp/nn";
 * const model = new Sequential(new Linear(784, 128, { seed: 1 }), new ReLU(), new Linear(128, 10, { seed: 2 }));
 * const opt = new AdamW({ lr: 1e-3 });
 * const x = new Float32Array(32 * 784), labels = new Int32Array(32);
 * model.zeroGrad();
 * const { loss, grad } = softmaxCrossEntropy(model.forward(x, 32), labels, 32, 10);
 * model.backward(grad);
 * opt.step(model.parameters());
 * console.log(loss);
 * ```
 */

export type { Model, Parameter } from "../model.ts";
export { gemmBackend, setGemmBlasEnabled, sgemm, sgemmAsync } from "./gemm.ts";
export { type Layer, NnParameter, type ParamReady } from "./layer.ts";
export { Linear, type LinearOptions } from "./linear.ts";
export { GELU, ReLU } from "./activations.ts";
export { Sequential } from "./sequential.ts";
export { argmax, type LossResult, softmaxCrossEntropy } from "./loss.ts";
export { AdamW, type AdamWOptions, type OptimizerState, SGD, type SGDOptions, zeroGrad } from "./optim.ts";
export { seededRandom } from "./rng.ts";
export {
  argmaxGpu,
  GpuAdamW,
  type GpuAdamWOptions,
  GpuMlp,
  type GpuMlpOptions,
  type GpuParameter,
  softmaxCrossEntropyGpu,
} from "./gpu_layers.ts";
export type { GpuTensor } from "../../gpu/tensor.ts";
export type { Buffer, GpuGradReadyHook, GpuModel, GradReadyHook, ParamTensor } from "../model.ts";
export type { GpuBuffer } from "../model.ts";
export type { DevicePtr } from "../../gpu/cuda.ts";
export type { CpuTensor, DType } from "../../dtype.ts";
