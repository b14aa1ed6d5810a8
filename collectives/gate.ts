/**
 * @module
 * Gates: a collective issued now (so it keeps its place in the group's order) that starts only when a
 * promise resolves. GPU collectives use it to queue one host collective per staged chunk at call time,
 * each waiting for its device-to-host copy. The group reads the gate; nothing else does.
 */

const gates = new WeakMap<object, Promise<void>>();

/** Returns `opts` with `ready` attached: the collective called with these options waits for it to start. */
export function gated<T extends object>(opts: T, ready: Promise<void>): T {
  const o = { ...opts };
  gates.set(o, ready);
  return o;
}

/** The gate of `opts`, if one was attached with {@link gated}. */
export function gateOf(opts: object): Promise<void> | undefined {
  return gates.get(opts);
}
