/**
 * @module
 * Live recovery: the training state goes from one live member of a quorum to the others over the
 * quorum's own group, with no checkpoint in between: first a small header (broadcastObject: counters,
 * the model's signature, the optimizer's numbers and the shapes of its tensors), then every parameter,
 * buffer and optimizer tensor by broadcast from the source, straight into place. Who the source is,
 * and when to call it, is the manager's business.
 */

import type { CpuTensor, ProcessGroup } from "../../collectives/mod.ts";
import { InvalidArgumentError } from "../../errors.ts";
import type { Buffer, Parameter, ParamTensor } from "../model.ts";
import type { OptimizerState } from "../nn/optim.ts";

/** An optimizer whose state can travel: ddp/nn's SGD and AdamW, or your own. */
export interface StatefulOptimizer {
  /** Updates the parameters from their (averaged) gradients. */
  step(params: readonly Parameter[]): void;
  /** Its state for `params` (tensors may be views of its own). */
  stateDict(params: readonly Parameter[]): OptimizerState;
  /** Replaces its state with (a copy of) `state`. */
  loadStateDict(params: readonly Parameter[], state: OptimizerState): void;
}

/** What travels from the source to the others. */
export interface TrainingState {
  /** The model's parameters. */
  params: readonly Parameter[];
  /** The model's buffers. */
  buffers: readonly Buffer[];
  /** The optimizer. */
  optimizer: StatefulOptimizer;
  /** Counters (step, epoch, position in the epoch, ...), the source's replacing the others'. */
  values: Record<string, number>;
}

interface Header {
  values: Record<string, number>;
  model: string[];
  optimizer: { values: Record<string, number>; tensors: [string, "f32" | "f64", number][] };
}

/**
 * Makes every member's state equal to `source`'s (a collective over `pg`: every member calls it).
 * Returns the source's counters. Throws InvalidArgumentError on a member whose model differs from the
 * source's (names, lengths or types), and what the group throws when a member is lost meanwhile.
 */
export async function shareState(
  pg: ProcessGroup,
  source: number,
  state: TrainingState,
  timeoutMs?: number,
): Promise<Record<string, number>> {
  const isSource = pg.rank === source;
  const mine = signature(state);
  const opt = isSource ? state.optimizer.stateDict(state.params) : null;
  const header = await pg.broadcastObject<Header>(
    isSource
      ? {
        values: state.values,
        model: mine,
        optimizer: {
          values: opt!.values,
          tensors: Object.entries(opt!.tensors).map((
            [k, t],
          ) => [k, t instanceof Float64Array ? "f64" : "f32", t.length]),
        },
      }
      : null,
    { root: source, timeoutMs },
  );
  const at = header.model.findIndex((s, i) => s !== mine[i]);
  if (at >= 0 || header.model.length !== mine.length) {
    const i = at >= 0 ? at : Math.min(header.model.length, mine.length);
    throw new InvalidArgumentError(
      `the model differs from the one of the replica sending the state, at entry ${i}: "${
        header.model[i] ?? "(none)"
      }" ` +
        `there, "${mine[i] ?? "(none)"}" here`,
      { rank: pg.rank, op: "shareState" },
    );
  }
  const tensors: Record<string, Float32Array | Float64Array> = isSource ? opt!.tensors : {};
  if (!isSource) {
    for (const [k, kind, n] of header.optimizer.tensors) {
      tensors[k] = kind === "f64" ? new Float64Array(n) : new Float32Array(n);
    }
  }
  const items: { data: ParamTensor; dtype?: "f16" | "bf16" }[] = [
    ...[...state.params, ...state.buffers].map((p) => ({ data: p.data, dtype: halfOf(p) })),
    ...header.optimizer.tensors.map(([k]) => ({ data: tensors[k] as ParamTensor })),
  ];
  const works = items.map((t) =>
    pg.broadcast(t.data as CpuTensor, { root: source, async: true, dtype: t.dtype, timeoutMs })
  );
  let failed: unknown = null;
  for (const w of works) await w.wait().catch((e) => failed ??= e);
  if (failed !== null) throw failed;
  if (!isSource) state.optimizer.loadStateDict(state.params, { tensors, values: header.optimizer.values });
  return header.values;
}

function halfOf(p: Parameter | Buffer): "f16" | "bf16" | undefined {
  if (!(p.data instanceof Uint16Array)) return undefined;
  return "dtype" in p && p.dtype === "bf16" ? "bf16" : "f16";
}

/** Names, lengths and types of the model's tensors, compared between source and receivers. */
function signature(s: TrainingState): string[] {
  return [
    ...s.params.map((p) => `param ${p.name} ${p.data.length} ${p.data.constructor.name}`),
    ...s.buffers.map((b) => `buffer ${b.name} ${b.data.length} ${b.data.constructor.name}`),
  ];
}
