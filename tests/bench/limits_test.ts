/**
 * @module
 * bench/limits.ts for real: compiles and runs bench/limits.c (about 5 s) and checks that every figure
 * is a positive number in a plausible relation to the others, and that the table names each one.
 * Skipped with the reason printed when no C compiler is installed.
 */

import assert from "node:assert/strict";
import {
  findCompiler,
  limitsLines,
  type MachineLimits,
  MEASURED,
  measureLimits,
} from "../../bench/limits.ts";

const compiler = await findCompiler();
const why = compiler ? null : "no C compiler (cc, gcc or clang) on PATH: `apt-get install gcc`";
if (why) console.log(`skipped: ${why}`);

Deno.test({
  name: "bench/limits: measures memcpy, shared-memory and TCP limits of this machine",
  ignore: why !== null,
  fn: async () => {
    const l: MachineLimits = await measureLimits();
    const text = JSON.stringify(l);
    for (const k of MEASURED) {
      assert.ok(Number.isFinite(l[k]) && l[k] > 0, `${k} is not a positive number: ${text}`);
    }
    assert.ok(l.loadAvg1 >= 0, text);
    // Plausible ranges (wide: a loaded 2-core virtual machine and a big server both pass).
    assert.ok(l.memcpyGBs1 > 0.3 && l.memcpyGBs1 < 1000, text);
    assert.ok(Math.abs(l.memcpyGBs2Total - 2 * l.memcpyGBs2) < 1e-2 * l.memcpyGBs2Total + 2e-3, text);
    assert.ok(l.shmRttUsMin <= l.shmRttUs && l.shmRttUs < 1000, text);
    // The fastest shared-memory round trip beats the median TCP one even on a loaded machine.
    assert.ok(l.shmRttUsMin < l.tcpRttUs && l.shmRttUsMin < l.tcpRttUsPoll, text);
    assert.ok(l.tcpRttUs < 100_000 && l.tcpRttUsPoll < 100_000, text);
    assert.ok(l.tcpGBs > 0.01 && l.tcpGBs < 1000 && l.tcpGBsBoth > 0.01 && l.tcpGBsBoth < 1000, text);
    assert.ok(Number.isInteger(l.cpus), text);
    assert.match(l.cc, /^(cc|gcc|clang): /);
    assert.ok(!Number.isNaN(Date.parse(l.date)), text);

    const lines = limitsLines(l);
    assert.equal(lines.length, 8);
    for (const word of ["memcpy", "one core", "two cores", "ping-pong", "round trip", "both directions"]) {
      assert.ok(lines.some((s) => s.includes(word)), `no line mentions ${word}: ${lines.join("\n")}`);
    }
    assert.ok(lines.slice(1).every((s) => / (GB\/s|us) /.test(s)), lines.join("\n"));
  },
});
