/**
 * @module
 * One rank of bench/startup.ts: joins from env://, makes one allReduce, prints the wall-clock time
 * (ms since the epoch) at which it completed, and leaves.
 */

import { initProcessGroup } from "../mod.ts";

const pg = await initProcessGroup();
await pg.allReduce(new Float32Array(8));
console.log(performance.timeOrigin + performance.now());
await pg.destroy();
