/**
 * @module
 * Reduce kernels: element-wise SUM/PRODUCT/MIN/MAX/bitwise over typed arrays and over data already in
 * a `WebAssembly.Memory`, plus the scaling steps of AVG and PREMUL_SUM. Collectives call these.
 */

export { divideInto, reduceInto, type ReducePath, reducePath, scaleInto } from "./reduce.ts";
export { type WasmMemoryOptions, WasmReducer } from "./wasm_reducer.ts";
export { blasAvailable, setBlasEnabled } from "./blas.ts";
