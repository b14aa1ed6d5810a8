/**
 * @module
 * The benchmarks' MLP: `depth` hidden layers of `hidden` units with ReLU, seeded per layer, so that
 * bench/ddp_mlp.ts and bench/ft_ab.ts train the very same model.
 */

import { Linear, ReLU, Sequential } from "../ddp/nn/mod.ts";
import type { Layer } from "../ddp/nn/mod.ts";

/** A `input`-`hidden`x`depth`-`classes` MLP, layer l seeded with l + 1. */
export function mlpModel(input: number, hidden: number, depth: number, classes: number): Sequential {
  const layers: Layer[] = [];
  let prev = input;
  for (let l = 0; l < depth; l++) {
    layers.push(new Linear(prev, hidden, { seed: l + 1 }), new ReLU());
    prev = hidden;
  }
  layers.push(new Linear(prev, classes, { seed: depth + 1 }));
  return new Sequential(...layers);
}
