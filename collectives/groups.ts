/**
 * @module
 * The arithmetic of forming subgroups: names every rank derives alike (no extra agreement round),
 * the numeric id frames carry, and who joins whom in a split. Opening the groups is left to others.
 */

/** FNV-1a over 32-bit words: a stable 32-bit digest of a string or a list of numbers. */
function fnv1a(words: Iterable<number>): number {
  let h = 0x811c9dc5;
  for (const w of words) {
    for (let b = 0; b < 32; b += 8) {
      h ^= (w >>> b) & 0xff;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h >>> 0;
}

/** A digest of a member list, exchanged so every rank can check that all passed the same list. */
export function groupDigest(ranks: readonly number[]): number {
  return fnv1a([ranks.length, ...ranks]);
}

/** The name of the `index`-th group made by `newGroup` on the group named `parent`. */
export function groupTag(parent: string, index: number): string {
  return `${parent}.g${index}`;
}

/** The name of the group of `color` made by the `index`-th `split` on the group named `parent`. */
export function splitTag(parent: string, index: number, color: number): string {
  return `${parent}.s${index}c${color}`;
}

/**
 * The numeric id of the group named `tag`, stamped on its frames and handshakes (never 0, the
 * world's id). Groups have their own connections, so the id only guards against crossed wires.
 */
export function groupIdOf(tag: string): number {
  if (tag === "pg0") return 0;
  return fnv1a(Array.from(tag, (c) => c.charCodeAt(0))) || 1;
}

/**
 * The members of `color` after a split, as ranks of the parent in the new group's order: by key,
 * then by parent rank. `pairs` holds every rank's (color, key), color -1 meaning "no group".
 */
export function splitMembers(pairs: Float64Array, color: number): number[] {
  const members: number[] = [];
  for (let p = 0; p < pairs.length / 2; p++) if (pairs[2 * p] === color) members.push(p);
  return members.sort((a, b) => pairs[2 * a + 1] - pairs[2 * b + 1] || a - b);
}
