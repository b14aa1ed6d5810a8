/**
 * @module
 * The benchmarks' MLP: `depth` hidden layers of `hidden` units with ReLU, seeded per layer, so that
 * bench/ddp_mlp.ts and bench/ft_ab.ts train the very same model; and the numeric flags both read.
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

/** The number after `--name` on the command line, or `fallback`. */
export function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}
