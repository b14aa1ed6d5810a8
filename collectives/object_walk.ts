/**
 * @module
 * Checks a value before it is encoded for an object collective, so that the sender refuses what every
 * receiver would (object_scan.ts) and says where: a cycle, a RegExp or Error, nesting deeper than the
 * limit. It also stops a value whose shared parts would encode into more than the size cap (each
 * visit costs a byte of encoding at least) before the encoder builds it. Encoding is objects.ts's job.
 */

import type { PayloadRefusal } from "../errors.ts";

/** Why a value was refused, or null when it may be encoded. */
export type WalkVerdict = { reason: PayloadRefusal; detail: string } | null;

/**
 * Walks `value` (arrays, plain and class objects, Maps and Sets are containers, one level each), at
 * most `maxDepth` containers deep and `maxVisits` values in all.
 */
export function checkValue(value: unknown, maxDepth: number, maxVisits: number): WalkVerdict {
  const ancestors = new Set<object>();
  let visits = 0;
  // Where a refusal happened, built as the walk unwinds (no path string per value on the way down).
  const where: string[] = [];
  const at = () => "the value" + where.reverse().join("");
  type Found = { reason: PayloadRefusal; what: string } | null;
  const walk = (v: unknown, depth: number): Found => {
    if (++visits > maxVisits) {
      return { reason: "size", what: `more than ${maxVisits} values (shared parts count each time)` };
    }
    if (typeof v !== "object" || v === null) return null;
    if (v instanceof RegExp) return { reason: "type", what: "a RegExp" };
    if (v instanceof Error) return { reason: "type", what: "an Error object" };
    if (v instanceof Date || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return null;
    if (ancestors.has(v)) return { reason: "cycle", what: "a reference to an enclosing value (a cycle)" };
    if (depth >= maxDepth) return { reason: "depth", what: `nested deeper than ${maxDepth} levels` };
    ancestors.add(v);
    try {
      if (Array.isArray(v) || v instanceof Set) {
        let i = 0;
        for (const item of v) {
          const bad = walk(item, depth + 1);
          if (bad) return where.push(`[${i}]`), bad;
          i++;
        }
      } else if (v instanceof Map) {
        for (const [k, item] of v) {
          const bad = walk(k, depth + 1) ?? walk(item, depth + 1);
          if (bad) return where.push(`.get(${String(k).slice(0, 40)})`), bad;
        }
      } else {
        for (const k of Object.keys(v)) {
          const bad = walk((v as Record<string, unknown>)[k], depth + 1);
          if (bad) return where.push(`.${k}`), bad;
        }
      }
      return null;
    } finally {
      ancestors.delete(v);
    }
  };
  const bad = walk(value, 0);
  if (bad === null) return null;
  return {
    reason: bad.reason,
    detail: bad.reason === "size" ? `it holds ${bad.what}` : `${at()} is ${bad.what}`,
  };
}
