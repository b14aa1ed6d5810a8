/**
 * @module
 * A TensorFlow.js model as a DDP {@link Model}: each trainable float32 `tf.Variable` becomes a
 * {@link Parameter} whose `data` and `grad` are Float32Arrays owned by the adapter, gradients come from
 * `tf.variableGrads`, and averaged gradients go back to TF.js through its optimizer or a choir one.
 *
 * `data` is the source of truth: {@link TfjsModel.backward} first writes `data` into the variables
 * (one copy per variable and step), so what DDP broadcasts at creation, or what a choir optimizer
 * writes, takes effect; {@link TfjsModel.applyOptimizer} reads the variables back after a TF.js
 * optimizer changed them.
 *
 * No overlap: TF.js computes every gradient in one `variableGrads` call, so the ready hook fires for
 * each parameter (last first) only after all of backward is done; communication cannot overlap it.
 *
 * Gradients: the Node bundle of `@tensorflow/tfjs-core` registers no gradient functions. Import
 * `@tensorflow/tfjs` (its bundle registers them all on the same tfjs-core) or register the ones your
 * model needs with `tf.registerGradient`, before calling backward.
 *
 * Not a published entry point yet (its signatures use TF.js's own types): import it by path, as
 * examples/tfjs_ddp.ts does.
 */

import * as tf from "@tensorflow/tfjs-core";
import { InvalidArgumentError, LibraryUnavailableError } from "../../errors.ts";
import type { GradReadyHook, Model, Parameter } from "../model.ts";

/** A parameter mirroring one TF.js variable. */
export interface TfjsParameter extends Parameter {
  /** The value (a copy of the variable's, kept by the adapter). */
  readonly data: Float32Array;
  /** The gradient, accumulated by {@link TfjsModel.backward}. */
  readonly grad: Float32Array;
  /** The variable it mirrors. */
  readonly variable: tf.Variable;
}

/** Wraps TF.js variables (float32) as a {@link Model} for DistributedDataParallel. */
export class TfjsModel implements Model {
  readonly #params: readonly TfjsParameter[];
  #hook: GradReadyHook | null = null;

  /**
   * An adapter over `variables` (their order is the parameter order; names are the variables' names,
   * which must be the same on every rank: create the variables in the same order, or name them).
   */
  constructor(variables: readonly tf.Variable[]) {
    const names = new Set<string>();
    this.#params = variables.map((v) => {
      if (v.dtype !== "float32") {
        throw new InvalidArgumentError(
          `TfjsModel: variable ${v.name} is ${v.dtype}; only float32 is supported`,
          {
            op: "TfjsModel",
          },
        );
      }
      if (names.has(v.name)) {
        throw new InvalidArgumentError(`TfjsModel: two variables named ${v.name}`, { op: "TfjsModel" });
      }
      names.add(v.name);
      const data = Float32Array.from(v.dataSync() as Float32Array);
      return { name: v.name, data, grad: new Float32Array(data.length), dtype: "f32", variable: v };
    });
  }

  /** One parameter per variable, in the order given. */
  parameters(): readonly TfjsParameter[] {
    return this.#params;
  }

  /** Installs the hook {@link backward} calls per parameter (null removes it). */
  setGradReadyHook(hook: GradReadyHook | null): void {
    this.#hook = hook;
  }

  /** Writes every parameter's `data` into its variable. */
  pushToVariables(): void {
    for (const p of this.#params) {
      // A copy: the CPU backend keeps the array it is given, and `data` changes in place.
      const t = tf.tensor(p.data.slice(), p.variable.shape, "float32");
      p.variable.assign(t);
      t.dispose();
    }
  }

  /** Reads every variable into its parameter's `data`. */
  pullFromVariables(): void {
    for (const p of this.#params) p.data.set(p.variable.dataSync() as Float32Array);
  }

  /**
   * Runs `loss` (a function building a scalar from the variables) under `tf.variableGrads`, adds each
   * gradient into its parameter's `grad` (`+=`), then calls the ready hook once per parameter, last
   * parameter first. Returns the loss value.
   */
  backward(loss: () => tf.Scalar): number {
    this.pushToVariables();
    let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
    try {
      result = tf.variableGrads(loss, this.#params.map((p) => p.variable));
    } catch (e) {
      if (e instanceof Error && e.message.includes("gradient function not found")) {
        throw new LibraryUnavailableError(
          `TfjsModel.backward: ${e.message} (import "@tensorflow/tfjs" to register TF.js gradients)`,
          { op: "TfjsModel.backward", cause: e },
        );
      }
      throw e;
    }
    const { value, grads } = result;
    try {
      for (const p of this.#params) {
        const g = grads[p.variable.name];
        if (g === undefined) continue;
        const gv = g.dataSync() as Float32Array;
        for (let i = 0; i < gv.length; i++) p.grad[i] += gv[i];
      }
      const hook = this.#hook;
      if (hook) { for (let i = this.#params.length - 1; i >= 0; i--) hook(this.#params[i]); }
      return (value.dataSync() as Float32Array)[0];
    } finally {
      value.dispose();
      for (const g of Object.values(grads)) g.dispose();
    }
  }

  /** Sets every gradient to zero. */
  zeroGrad(): void {
    for (const p of this.#params) p.grad.fill(0);
  }

  /** Applies a TF.js optimizer with the parameters' (averaged) gradients, then reads the variables back. */
  applyOptimizer(optimizer: tf.Optimizer): void {
    this.pushToVariables();
    const grads: tf.NamedTensorMap = {};
    for (const p of this.#params) grads[p.variable.name] = tf.tensor(p.grad, p.variable.shape, "float32");
    try {
      optimizer.applyGradients(grads);
    } finally {
      for (const g of Object.values(grads)) g.dispose();
    }
    this.pullFromVariables();
  }
}
