/**
 * @module
 * `deno run -A bench/calibrate.ts`: measures the cost-model constants of collectives/plan/cost_model.ts
 * on this machine: alpha (us per message round) and beta (us per byte, both directions at once) over
 * tcp, shm and (when libucp is there) ucx from two ranks' ping-pong and exchanges, gamma (us per byte of the f32 SUM kernel) and
 * the memcpy rate. Short (about 10 s): run it on an otherwise quiet machine, then copy the printed
 * values into cost_model.ts with the date.
 */

import { launch } from "../launch/mod.ts";
import { ucxAvailability } from "../transports/ucx/lib.ts";

interface Calibration {
  transport: string;
  exchange8Us: number;
  exchangeLargeUs: number;
  largeBytes: number;
  pingPong8Us: number;
  pingPongLargeUs: number;
  alphaUs: number;
  frameUs: number;
  betaUsPerByte: number;
  betaOneWayUsPerByte: number;
  gammaUsPerByte: number;
  gammaColdUsPerByte: number;
  gammaPath: string;
  copyUsPerByte: number;
  copyColdUsPerByte: number;
}

const results: Calibration[] = [];
const ucx = ucxAvailability();
if (!ucx.ok) console.error(`calibrate: ucx skipped (${ucx.reason})`);
for (const transport of ["tcp", "shm", ...(ucx.ok ? ["ucx"] : [])]) {
  const res = await launch({
    program: new URL("./calibrate_rank.ts", import.meta.url).pathname,
    nprocPerNode: 2,
    env: { CHOIR_TRANSPORT: transport },
    onOutput: (rank, _stream, line) => {
      if (rank === 0 && line.startsWith("CAL ")) results.push(JSON.parse(line.slice(4)));
      else if (!line.startsWith("CAL ")) console.error(`[${transport} rank ${rank}] ${line}`);
    },
  });
  if (res.code !== 0) {
    console.error(`calibrate: ${transport} ranks failed (exit ${res.code})`);
    Deno.exit(res.code);
  }
}

const gbs = (usPerByte: number) => (1e-3 / usPerByte).toFixed(2);
for (const c of results) {
  console.log(
    `${c.transport}: alpha ${c.alphaUs.toFixed(1)} us (8 B exchange; ping-pong half round trip ${
      c.pingPong8Us.toFixed(1)
    } us), frame ${c.frameUs.toFixed(1)} us, beta ${
      c.betaUsPerByte.toExponential(3)
    } us/B both ways at once (${gbs(c.betaUsPerByte)} GB/s each way; one way ${
      gbs(c.betaOneWayUsPerByte)
    } GB/s)`,
  );
}
const c = results[0];
console.log(
  `reduce f32 sum (${c.gammaPath}), 1 MiB blocks over 4 MiB: gamma ${
    c.gammaUsPerByte.toExponential(3)
  } us/B (${gbs(c.gammaUsPerByte)} GB/s; over 16 MiB ${gbs(c.gammaColdUsPerByte)} GB/s); memcpy ${
    c.copyUsPerByte.toExponential(3)
  } us/B (${gbs(c.copyUsPerByte)} GB/s; over 16 MiB ${gbs(c.copyColdUsPerByte)} GB/s)`,
);
console.log(`JSON ${JSON.stringify(results)}`);
