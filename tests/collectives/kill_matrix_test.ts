/**
 * @module
 * SIGKILL of a random rank of 4 during every collective, over tcp and shm: every survivor gets
 * PeerLostError naming the killed rank within 3 s, and no process hangs. `CHOIR_KILL_TRIALS` sets the
 * trials per op and transport (default 1 in CI; the matrix is 20).
 */

import { assertNamed, killTrial } from "../helpers/kill.ts";

const trials = Math.max(1, Number(Deno.env.get("CHOIR_KILL_TRIALS") ?? 1));
const OPS = [
  "allReduce",
  "broadcast",
  "reduce",
  "allGather",
  "reduceScatter",
  "allToAll",
  "gather",
  "scatter",
  "barrier",
];

for (const transport of ["tcp", "shm"]) {
  for (const op of OPS) {
    Deno.test(`SIGKILL of a random rank of 4 during ${op} (${transport}), ${trials} trial(s): the survivors name it`, async () => {
      for (let t = 0; t < trials; t++) {
        const victim = Math.floor(Math.random() * 4);
        const count = op === "allReduce" ? 65536 : 4096;
        const results = await killTrial({ op, transport, count, worldSize: 4, victim });
        assertNamed(results, victim, `${op} trial ${t}, victim ${victim}`);
      }
    });
  }
}
