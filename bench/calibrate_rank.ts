/**
 * @module
 * The program each calibration rank runs (started by bench/calibrate.ts, two ranks): ping-pong and
 * simultaneous exchanges through the ProcessGroup's send/recv (so frame headers and the JavaScript
 * around them are counted, as the algorithms pay them), then the reduce kernel and memcpy on rank 0.
 * Rank 0 prints one `CAL {json}` line. Each measurement is the best of three short repeats.
 */

import { initProcessGroup, reduceInto, reducePath } from "../collectives/mod.ts";

const pg = await initProcessGroup();
if (pg.size !== 2) throw new Error("calibration needs exactly 2 ranks");
const peer = 1 - pg.rank;

/** Microseconds per iteration of `step`, best of three repeats of `iters`. */
async function time(iters: number, step: () => Promise<void>): Promise<number> {
  let best = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    await pg.barrier();
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) await step();
    best = Math.min(best, ((performance.now() - t0) * 1000) / iters);
  }
  return best;
}

/** Half a round trip: rank 0 sends and waits for the echo. */
function pingPong(bytes: number, iters: number): Promise<number> {
  const out = new Uint8Array(bytes);
  const back = new Uint8Array(bytes);
  return time(iters, async () => {
    if (pg.rank === 0) {
      await pg.send(out, { dst: peer });
      await pg.recv(back, { src: peer });
    } else {
      await pg.recv(back, { src: peer });
      await pg.send(back, { dst: peer });
    }
  }).then((us) => us / 2);
}

/** Both ranks send and receive at once (what a round of direct, RD or a ring step does). */
function exchange(bytes: number, iters: number): Promise<number> {
  const out = new Uint8Array(bytes);
  const into = new Uint8Array(bytes);
  return time(iters, async () => {
    await Promise.all([pg.send(out, { dst: peer }), pg.recv(into, { src: peer })]);
  });
}

/** Per frame of a one-way stream of `frames` small frames, closed by one acknowledgement. */
function stream(frames: number, iters: number): Promise<number> {
  const buf = new Uint8Array(8);
  return time(iters, async () => {
    if (pg.rank === 0) {
      const sends: Promise<void>[] = [];
      for (let j = 0; j < frames; j++) sends.push(pg.send(buf, { dst: peer }));
      await Promise.all(sends);
      await pg.recv(buf, { src: peer });
    } else {
      for (let j = 0; j < frames; j++) await pg.recv(buf, { src: peer });
      await pg.send(buf, { dst: peer });
    }
  }).then((us) => us / frames);
}

/**
 * Per-byte cost of `f` over 1 MiB blocks cycling through `blocks` MiB: 4 (in the last-level cache,
 * as a message of a few MiB is when it is reduced) or 16 (mostly out of it).
 */
function perByte(blocks: number, f: (i: number) => void): number {
  let best = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    for (let i = 0; i < 4 * blocks; i++) f(i % blocks);
    best = Math.min(best, ((performance.now() - t0) * 1000) / (4 * blocks * (1 << 20)));
  }
  return best;
}

// Warm the JIT and the connection.
await exchange(8, 200);
await exchange(1 << 16, 20);

const small = await exchange(8, 500);
const big = 4 << 20;
const large = await exchange(big, 12);
const ppSmall = await pingPong(8, 500);
const ppLarge = await pingPong(big, 12);
const frame = await stream(64, 20);

let gamma = 0;
let gammaCold = 0;
let copy = 0;
let copyCold = 0;
const path = reducePath("f32", "sum", (1 << 20) / 4);
if (pg.rank === 0) {
  const a = new Float32Array(4 << 20).fill(1);
  const b = new Float32Array(4 << 20).fill(2);
  const blk = (t: Float32Array, i: number) => t.subarray(i << 18, (i + 1) << 18);
  const sum = (i: number) => reduceInto("f32", "sum", blk(a, i), blk(b, i));
  const cp = (i: number) => blk(a, i).set(blk(b, i));
  perByte(16, sum); // warm
  gamma = perByte(4, sum);
  gammaCold = perByte(16, sum);
  perByte(16, cp);
  copy = perByte(4, cp);
  copyCold = perByte(16, cp);
}
await pg.barrier();

if (pg.rank === 0) {
  console.log(`CAL ${
    JSON.stringify({
      transport: pg.backend,
      exchange8Us: small,
      exchangeLargeUs: large,
      largeBytes: big,
      pingPong8Us: ppSmall,
      pingPongLargeUs: ppLarge,
      alphaUs: small,
      frameUs: frame,
      betaUsPerByte: (large - small) / big,
      betaOneWayUsPerByte: (ppLarge - ppSmall) / big,
      gammaUsPerByte: gamma,
      gammaColdUsPerByte: gammaCold,
      gammaPath: path,
      copyUsPerByte: copy,
      copyColdUsPerByte: copyCold,
    })
  }`);
}
await pg.destroy();
