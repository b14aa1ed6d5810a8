/**
 * @module
 * The first example: every rank contributes its rank number; after allReduce every element holds
 * the sum of all ranks. Run with `deno task launch --nproc-per-node 4 examples/allreduce.ts`.
 */

import { initProcessGroup, ReduceOp } from "../mod.ts";

const pg = await initProcessGroup(); // env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
const x = new Float32Array(1 << 20).fill(pg.rank);
await pg.allReduce(x, { op: ReduceOp.SUM });
const expected = (pg.size * (pg.size - 1)) / 2;
if (!x.every((v) => v === expected)) throw new Error(`rank ${pg.rank}: wrong sum`);

await pg.broadcast(x, { root: 0 });
await pg.barrier();
console.log(`rank ${pg.rank} of ${pg.size}: allReduce gave ${x[0]} (expected ${expected})`);
await pg.destroy();
