/**
 * @module
 * Optimizers that update parameters in place from their gradients, with torch's semantics:
 * {@link SGD} (momentum, L2 weight decay) and {@link AdamW} (decoupled weight decay). Each can hand
 * out its state and load it back ({@link OptimizerState}), so a replica joining a fault-tolerant job
 * gets it from a live peer.
 */

import { InvalidArgumentError } from "../../errors.ts";
import type { Parameter } from "../model.ts";

type Floats = Float32Array | Float64Array;

function floats(p: Parameter, op: string): { data: Floats; grad: Floats } {
  const { data, grad } = p;
  if (data instanceof Uint16Array || grad instanceof Uint16Array) {
    throw new InvalidArgumentError(`${op}: parameter ${p.name} is 16-bit; only f32/f64 are supported`, {
      op,
    });
  }
  return { data, grad };
}

/**
 * An optimizer's state, keyed by parameter name (torch's `state_dict()` in spirit): its tensors (e.g.
 * `"0.weight.momentum_buffer"`) and numbers (the learning rate, step counts).
 */
export interface OptimizerState {
  /** Per-parameter tensors, named `<parameter name>.<what>`. */
  tensors: Record<string, Float32Array | Float64Array>;
  /** Numbers: `lr`, and per-parameter counters named `<parameter name>.<what>`. */
  values: Record<string, number>;
}

function byName(params: readonly Parameter[]): Map<string, Parameter> {
  return new Map(params.map((p) => [p.name, p]));
}

function stateTensor<T extends Float32Array | Float64Array>(
  s: OptimizerState,
  key: string,
  kind: new (n: number) => T,
  length: number,
  op: string,
): T {
  const t = s.tensors[key];
  if (!(t instanceof kind) || t.length !== length) {
    throw new InvalidArgumentError(
      `${op}: state tensor ${key} must be a ${kind.name} of ${length} elements, got ${
        t === undefined ? "nothing" : `${t.constructor.name}(${t.length})`
      }`,
      { op },
    );
  }
  return t;
}

/** Options of {@link SGD}. */
export interface SGDOptions {
  /** Learning rate. */
  lr: number;
  /** Momentum factor (default 0: plain SGD). */
  momentum?: number;
  /** L2 penalty added to the gradient (default 0). */
  weightDecay?: number;
}

/** Stochastic gradient descent with momentum: `b = m b + (g + wd p)`, `p -= lr b` (as torch.optim.SGD). */
export class SGD {
  /** Learning rate (may be changed between steps). */
  lr: number;
  /** Momentum factor. */
  readonly momentum: number;
  /** L2 weight decay. */
  readonly weightDecay: number;
  readonly #buf = new Map<Parameter, Float64Array>();

  /** An optimizer with these settings. */
  constructor(opts: SGDOptions) {
    this.lr = opts.lr;
    this.momentum = opts.momentum ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
  }

  /** Updates every parameter that requires a gradient. */
  step(params: readonly Parameter[]): void {
    const lr = this.lr, mom = this.momentum, wd = this.weightDecay;
    for (const p of params) {
      if (p.requiresGrad === false) continue;
      const { data, grad } = floats(p, "SGD.step");
      if (mom === 0) {
        for (let i = 0; i < data.length; i++) data[i] -= lr * (grad[i] + wd * data[i]);
        continue;
      }
      let b = this.#buf.get(p);
      const first = b === undefined;
      if (b === undefined) {
        b = new Float64Array(data.length);
        this.#buf.set(p, b);
      }
      for (let i = 0; i < data.length; i++) {
        const g = grad[i] + wd * data[i];
        b[i] = first ? g : mom * b[i] + g;
        data[i] -= lr * b[i];
      }
    }
  }

  /** The momentum buffers of `params` (views, not copies; none before the first step) and `lr`. */
  stateDict(params: readonly Parameter[]): OptimizerState {
    const tensors: Record<string, Float64Array> = {};
    for (const p of params) {
      const b = this.#buf.get(p);
      if (b) tensors[`${p.name}.momentum_buffer`] = b;
    }
    return { tensors, values: { lr: this.lr } };
  }

  /** Replaces the state with a copy of `state` (from {@link stateDict}, maybe another process's). */
  loadStateDict(params: readonly Parameter[], state: OptimizerState): void {
    const op = "SGD.loadStateDict";
    const named = byName(params);
    this.#buf.clear();
    for (const key of Object.keys(state.tensors)) {
      const name = key.slice(0, -".momentum_buffer".length);
      const p = named.get(name);
      if (!key.endsWith(".momentum_buffer") || !p) {
        throw new InvalidArgumentError(`${op}: ${key} belongs to no parameter`, { op });
      }
      this.#buf.set(p, stateTensor(state, key, Float64Array, p.data.length, op).slice());
    }
    if (state.values.lr !== undefined) this.lr = state.values.lr;
  }
}

/** Options of {@link AdamW}. */
export interface AdamWOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Decay rates of the first and second moment estimates (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator for stability (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 0.01). */
  weightDecay?: number;
}

/** Adam with decoupled weight decay (as torch.optim.AdamW). */
export class AdamW {
  /** Learning rate (may be changed between steps). */
  lr: number;
  /** Moment decay rates. */
  readonly betas: readonly [number, number];
  /** Denominator epsilon. */
  readonly eps: number;
  /** Decoupled weight decay. */
  readonly weightDecay: number;
  readonly #state = new Map<Parameter, { m: Float32Array; v: Float32Array; t: number }>();

  /** An optimizer with these settings. */
  constructor(opts: AdamWOptions = {}) {
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  /** Updates every parameter that requires a gradient. */
  step(params: readonly Parameter[]): void {
    const [b1, b2] = this.betas, lr = this.lr, eps = this.eps, wd = this.weightDecay;
    for (const p of params) {
      if (p.requiresGrad === false) continue;
      const { data, grad } = floats(p, "AdamW.step");
      let s = this.#state.get(p);
      if (s === undefined) {
        s = { m: new Float32Array(data.length), v: new Float32Array(data.length), t: 0 };
        this.#state.set(p, s);
      }
      s.t++;
      adamwUpdate(
        data,
        grad,
        s.m,
        s.v,
        b1,
        b2,
        lr / (1 - b1 ** s.t),
        1 / Math.sqrt(1 - b2 ** s.t),
        eps,
        lr * wd,
      );
    }
  }

  /**
   * The moments of `params` (`<name>.exp_avg`, `<name>.exp_avg_sq`: views, not copies), their step
   * counts (`<name>.step`) and `lr`; none before the first step.
   */
  stateDict(params: readonly Parameter[]): OptimizerState {
    const tensors: Record<string, Float32Array> = {};
    const values: Record<string, number> = { lr: this.lr };
    for (const p of params) {
      const s = this.#state.get(p);
      if (!s) continue;
      tensors[`${p.name}.exp_avg`] = s.m;
      tensors[`${p.name}.exp_avg_sq`] = s.v;
      values[`${p.name}.step`] = s.t;
    }
    return { tensors, values };
  }

  /** Replaces the state with a copy of `state` (from {@link stateDict}, maybe another process's). */
  loadStateDict(params: readonly Parameter[], state: OptimizerState): void {
    const op = "AdamW.loadStateDict";
    this.#state.clear();
    for (const p of params) {
      const t = state.values[`${p.name}.step`];
      if (t === undefined) continue;
      const n = p.data.length;
      this.#state.set(p, {
        m: stateTensor(state, `${p.name}.exp_avg`, Float32Array, n, op).slice(),
        v: stateTensor(state, `${p.name}.exp_avg_sq`, Float32Array, n, op).slice(),
        t,
      });
    }
    const known = new Set(params.flatMap((p) => [`${p.name}.exp_avg`, `${p.name}.exp_avg_sq`]));
    const stray = Object.keys(state.tensors).find((k) => !known.has(k));
    if (stray !== undefined) {
      throw new InvalidArgumentError(`${op}: ${stray} belongs to no parameter`, { op });
    }
    if (state.values.lr !== undefined) this.lr = state.values.lr;
  }
}

/**
 * One AdamW update in torch's form: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
 * `p = p (1 - lr wd) - stepSize m / (sqrt(v) / sqrt(c2) + eps)`. A plain function over typed arrays,
 * so V8 compiles one tight loop (inline in `step`, the same loop ran 5x slower); the division by
 * sqrt(c2) is a multiplication by its inverse (a division per element cost another 70%).
 */
function adamwUpdate(
  data: Floats,
  grad: Floats,
  m: Float32Array,
  v: Float32Array,
  b1: number,
  b2: number,
  stepSize: number,
  invSqrtC2: number,
  eps: number,
  lrWd: number,
): void {
  const a1 = 1 - b1, a2 = 1 - b2, decay = 1 - lrWd;
  for (let i = 0; i < data.length; i++) {
    const g = grad[i];
    const mi = b1 * m[i] + a1 * g;
    const vi = b2 * v[i] + a2 * g * g;
    m[i] = mi;
    v[i] = vi;
    data[i] = data[i] * decay - stepSize * mi / (Math.sqrt(vi) * invSqrtC2 + eps);
  }
}

/** Sets the gradient of every parameter to zero. */
export function zeroGrad(params: readonly Parameter[]): void {
  for (const p of params) p.grad.fill(0);
}
