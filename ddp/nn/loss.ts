/**
 * @module
 * Softmax cross-entropy over class logits, with its gradient.
 */

import { InvalidArgumentError } from "../../errors.ts";

/** Loss and the gradient of the loss with respect to the logits. */
export interface LossResult {
  /** Mean cross-entropy over the batch. */
  loss: number;
  /** d(loss)/d(logits), `batch x classes`. */
  grad: Float32Array;
}

/**
 * Mean over `batch` rows of `-log softmax(logits)[label]`, with its gradient
 * `(softmax - onehot(label)) / batch`. `logits` is `batch x classes`, row-major; labels are class
 * indices.
 */
export function softmaxCrossEntropy(
  logits: Float32Array,
  labels: ArrayLike<number>,
  batch: number,
  classes: number,
): LossResult {
  if (logits.length < batch * classes || labels.length < batch) {
    throw new InvalidArgumentError(
      `softmaxCrossEntropy: ${logits.length} logits and ${labels.length} labels for ${batch} x ${classes}`,
      { op: "softmaxCrossEntropy" },
    );
  }
  const grad = new Float32Array(batch * classes);
  let loss = 0;
  for (let r = 0; r < batch; r++) {
    const o = r * classes;
    const label = labels[r];
    if (!(Number.isInteger(label) && label >= 0 && label < classes)) {
      throw new InvalidArgumentError(`softmaxCrossEntropy: label ${label} of row ${r} out of range`, {
        op: "softmaxCrossEntropy",
      });
    }
    let max = -Infinity;
    for (let j = 0; j < classes; j++) if (logits[o + j] > max) max = logits[o + j];
    let sum = 0;
    for (let j = 0; j < classes; j++) {
      const e = Math.exp(logits[o + j] - max);
      grad[o + j] = e;
      sum += e;
    }
    loss += Math.log(sum) + max - logits[o + label];
    for (let j = 0; j < classes; j++) grad[o + j] /= sum * batch;
    grad[o + label] -= 1 / batch;
  }
  return { loss: loss / batch, grad };
}

/** Index of the largest logit of each of `batch` rows. */
export function argmax(logits: Float32Array, batch: number, classes: number): Int32Array {
  const out = new Int32Array(batch);
  for (let r = 0; r < batch; r++) {
    let best = 0;
    for (let j = 1; j < classes; j++) if (logits[r * classes + j] > logits[r * classes + best]) best = j;
    out[r] = best;
  }
  return out;
}
