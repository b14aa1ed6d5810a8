/**
 * @module
 * The peers a rank reads at start-up in the scale benchmarks' "neighbours" variant: its ring
 * neighbours and its binary-tree parent and children (what ring and tree algorithms need), the same
 * set in the Deno load, the harness and the Python torch load (`torch_store_load.py`).
 */

/** Ring previous/next, tree parent and children of `rank` among `size` ranks, ascending, self excluded. */
export function neighbours(rank: number, size: number): number[] {
  const set = new Set<number>();
  if (size > 1) {
    set.add((rank + size - 1) % size);
    set.add((rank + 1) % size);
  }
  if (rank > 0) set.add((rank - 1) >> 1);
  for (const c of [2 * rank + 1, 2 * rank + 2]) if (c < size) set.add(c);
  set.delete(rank);
  return [...set].sort((a, b) => a - b);
}
